//! The shopper's personal information: name, PRC resident ID number, phone
//! (name and phone are parsed as the shop parses them, in `shared`). The ID
//! number is a secret: `Debug` shows only its last character.
use std::fmt;

use paybind_shared::{clock::LocalDate, fields::Invalid};
use zeroize::Zeroizing;

pub use paybind_shared::person::{FullName, Phone};

/// An 18-character PRC resident identity number (GB 11643-1999): 17 digits
/// (region, birth date, sequence) and a check character, 0-9 or X.
#[derive(Clone, PartialEq, Eq)]
pub struct IdNumber(Zeroizing<String>);

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: [u8; 11] = *b"10X98765432";

/// The GB 11643 check character for the first 17 digits.
pub fn id_check_char(first17: &[u8]) -> u8 {
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    CHECK[(sum % 11) as usize]
}

impl IdNumber {
    /// `today` is the date now, to refuse birth dates in the future.
    pub fn parse(raw: &str, today: LocalDate) -> Result<Self, Invalid> {
        let invalid = |why: &str| Invalid::new("INVALID_ID_NUMBER", why.to_owned());
        let id: Zeroizing<String> = Zeroizing::new(raw.trim().to_ascii_uppercase());
        let bytes = id.as_bytes();
        if bytes.len() != 18 {
            return Err(invalid("ID number must have 18 characters"));
        }
        if !bytes[..17].iter().all(u8::is_ascii_digit)
            || !(bytes[17].is_ascii_digit() || bytes[17] == b'X')
        {
            return Err(invalid(
                "ID number must be 17 digits followed by a digit or X",
            ));
        }
        let num = |r: std::ops::Range<usize>| -> i32 { id[r].parse().unwrap_or(0) };
        let (year, month, day) = (num(6..10), num(10..12), num(12..14));
        if !valid_date(year, month, day)
            || year < 1900
            || (year, month, day) > (today.year, i32::from(today.month), i32::from(today.day))
        {
            return Err(invalid("ID number contains an invalid birth date"));
        }
        if id_check_char(&bytes[..17]) != bytes[17] {
            return Err(invalid("ID number is not valid (check character mismatch)"));
        }
        Ok(Self(id))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

fn valid_date(year: i32, month: i32, day: i32) -> bool {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

impl fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdNumber(*****************{})", &self.0[17..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TODAY: LocalDate = LocalDate {
        year: 2026,
        month: 11,
        day: 25,
    };

    #[test]
    fn accepts_valid_id_numbers() {
        // Check characters computed by hand from GB 11643's weights.
        for id in [
            "11010519491231002X",
            "110101199003074477",
            "440524198001010013",
        ] {
            assert!(IdNumber::parse(id, TODAY).is_ok(), "{id}");
        }
        assert!(
            IdNumber::parse("11010519491231002x", TODAY).is_ok(),
            "lower-case x"
        );
    }

    #[test]
    fn refuses_bad_id_numbers() {
        for bad in [
            "",
            "11010519491231002",  // 17 characters
            "110105194912310021", // wrong check character
            "11010519491331002X", // month 13
            "110105203001010011", // born in the future
            "1101051949123100AX", // letters
        ] {
            let err = IdNumber::parse(bad, TODAY).expect_err(bad);
            assert_eq!(err.reason, "INVALID_ID_NUMBER", "{bad}");
        }
    }

    #[test]
    fn id_debug_hides_the_number() {
        let id = IdNumber::parse("11010519491231002X", TODAY).expect("valid");
        assert_eq!(format!("{id:?}"), "IdNumber(*****************X)");
    }

    proptest! {
        #[test]
        fn any_valid_body_with_its_check_char_is_accepted(
            region in 110000u32..660000, year in 1900i32..2026, month in 1i32..=12, day in 1i32..=28, seq in 0u32..1000
        ) {
            let body = format!("{region:06}{year:04}{month:02}{day:02}{seq:03}");
            let id = format!("{body}{}", id_check_char(body.as_bytes()) as char);
            prop_assert!(IdNumber::parse(&id, TODAY).is_ok(), "{}", id);
            // Any other check character is refused.
            for c in CHECK.iter().filter(|c| **c != id.as_bytes()[17]) {
                let wrong = format!("{body}{}", *c as char);
                prop_assert!(IdNumber::parse(&wrong, TODAY).is_err());
            }
        }

        #[test]
        fn parsing_never_panics(raw in "\\PC{0,30}") {
            let _ = IdNumber::parse(&raw, TODAY);
        }
    }
}
