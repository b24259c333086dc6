//! The shopper's personal information: name, PRC resident ID number, phone.
//! The ID number is a secret: `Debug` shows only its last character.
use std::fmt;

use zeroize::Zeroizing;

use super::error::Invalid;

/// A person's name as on their ID: 1-100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullName(String);

impl FullName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(Invalid::new("INVALID_ARGUMENT", "full name is required"));
        }
        if name.chars().count() > 100 {
            return Err(Invalid::new(
                "INVALID_ARGUMENT",
                "full name must be at most 100 characters",
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(Invalid::new(
                "INVALID_ARGUMENT",
                "full name must not contain control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

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
    /// `today` is (year, month, day) now, to refuse birth dates in the future.
    pub fn parse(raw: &str, today: (i32, u8, u8)) -> Result<Self, Invalid> {
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
            || (year, month, day) > (today.0, i32::from(today.1), i32::from(today.2))
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

/// A mainland China mobile number, kept as E.164: `+86` and 11 digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    /// Accepts `13800138000`, `+86 138 0013 8000`, `0086-13800138000`.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let compact: String = raw
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
            .collect();
        let national = compact
            .strip_prefix("+86")
            .or_else(|| compact.strip_prefix("0086"))
            .unwrap_or(&compact);
        let b = national.as_bytes();
        if b.len() != 11
            || !b.iter().all(u8::is_ascii_digit)
            || b[0] != b'1'
            || !(b'3'..=b'9').contains(&b[1])
        {
            return Err(Invalid::new(
                "INVALID_PHONE",
                "phone must be a mainland China mobile number, e.g. +8613800138000",
            ));
        }
        Ok(Self(format!("+86{national}")))
    }

    /// `+8613800138000`.
    pub fn e164(&self) -> &str {
        &self.0
    }

    /// `+86 138****8000`: what the shopper and merchant are shown.
    pub fn masked(&self) -> String {
        let n = &self.0[3..];
        format!("+86 {}****{}", &n[..3], &n[7..])
    }

    /// Rebuilds a phone read back from the store (already validated once).
    pub fn from_stored(e164: String) -> Self {
        Self(e164)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TODAY: (i32, u8, u8) = (2026, 11, 25);

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

    #[test]
    fn phones_are_normalised_and_masked() {
        for raw in ["13800138000", "+86 138 0013 8000", "0086-13800138000"] {
            let p = Phone::parse(raw).expect(raw);
            assert_eq!(p.e164(), "+8613800138000");
            assert_eq!(p.masked(), "+86 138****8000");
        }
        for bad in [
            "",
            "12800138000",
            "1380013800",
            "+1 415 555 0100",
            "138001380001",
        ] {
            assert_eq!(Phone::parse(bad).expect_err(bad).reason, "INVALID_PHONE");
        }
    }

    #[test]
    fn names() {
        assert_eq!(FullName::parse("  张三 ").expect("ok").as_str(), "张三");
        assert!(FullName::parse("   ").is_err());
        assert!(FullName::parse(&"a".repeat(101)).is_err());
        assert!(FullName::parse("a\u{0}b").is_err());
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
            let _ = Phone::parse(&raw);
            let _ = FullName::parse(&raw);
        }
    }
}
