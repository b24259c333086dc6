//! Card information as parsed from a request. The card number and CVV are
//! secrets: their `Debug` shows nothing but the last four digits.
use std::fmt;

use paybind_shared::{
    clock::LocalDate,
    fields::{AllOk, Invalid, Rejected},
};
use zeroize::Zeroizing;

pub use paybind_shared::model::{CardBrand, CardExpiry as Expiry};

/// A card number that passed the length and Luhn checks: 12-19 digits.
#[derive(Clone, PartialEq, Eq)]
pub struct CardNumber(Zeroizing<String>);

impl CardNumber {
    /// Accepts digits with optional spaces or dashes between them.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let invalid = |why: &str| Invalid::new("INVALID_CARD_NUMBER", why.to_owned());
        let digits: Zeroizing<String> =
            Zeroizing::new(raw.chars().filter(|c| *c != ' ' && *c != '-').collect());
        if digits.is_empty() {
            return Err(invalid("card number is required"));
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("card number must contain only digits"));
        }
        if !(12..=19).contains(&digits.len()) {
            return Err(invalid("card number must have 12 to 19 digits"));
        }
        if !luhn_valid(&digits) {
            return Err(invalid("card number is not valid (check digit mismatch)"));
        }
        Ok(Self(digits))
    }

    /// The full number. Only the vault and the acquirer may call this.
    pub fn expose_digits(&self) -> &str {
        &self.0
    }

    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }

    pub fn brand(&self) -> CardBrand {
        CardBrand::of(&self.0)
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardNumber(****{})", self.last4())
    }
}

/// The Luhn (mod 10) check of a string of ASCII digits.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b.wrapping_sub(b'0'));
        if d > 9 {
            return false;
        }
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// Parses a card's expiry, valid through the end of its month: a card
/// expiring this month is still good. Each error names the part at fault
/// (`fields` are the month's and the year's request paths).
pub fn parse_expiry(
    month: i32,
    year: i32,
    today: LocalDate,
    fields: (&'static str, &'static str),
) -> Result<Expiry, Rejected> {
    let invalid = |message: &str| Invalid::new("INVALID_EXPIRY", message.to_owned());
    let month_ok = if (1..=12).contains(&month) {
        Ok(month as u8)
    } else {
        Err(invalid("expiry month must be 1 to 12").at(fields.0))
    };
    let year_ok = if !(2000..=2099).contains(&year) {
        Err(invalid("expiry year must have four digits, e.g. 2030").at(fields.1))
    } else if year > today.year + 20 {
        Err(invalid("expiry year is more than 20 years away").at(fields.1))
    } else if year < today.year {
        Err(invalid("the card has expired").at(fields.1))
    } else {
        Ok(year as u16)
    };
    let (month, year) = (month_ok, year_ok).all_ok()?;
    if i32::from(year) == today.year && month < today.month {
        return Err(invalid("the card has expired").at(fields.0));
    }
    Ok(Expiry { month, year })
}

/// A card verification value: never stored, never logged.
#[derive(Clone)]
pub struct Cvv(Zeroizing<String>);

impl Cvv {
    /// 3 digits, or 4 for American Express.
    /// `brand` is `None` when the card number itself was refused: then
    /// either length is accepted here, and the number's error is reported.
    pub fn parse(raw: &str, brand: Option<CardBrand>) -> Result<Self, Invalid> {
        let digits = raw.bytes().all(|b| b.is_ascii_digit());
        let (ok, want) = match brand {
            Some(CardBrand::Amex) => (raw.len() == 4, "4 digits"),
            Some(_) => (raw.len() == 3, "3 digits"),
            None => ((3..=4).contains(&raw.len()), "3 or 4 digits"),
        };
        if !ok || !digits {
            return Err(Invalid::new("INVALID_CVV", format!("CVV must be {want}")));
        }
        Ok(Self(Zeroizing::new(raw.to_owned())))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Cvv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cvv(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_test_cards_with_spaces_and_dashes() {
        let n = CardNumber::parse("4242 4242-4242 4242").expect("valid");
        assert_eq!(n.expose_digits(), "4242424242424242");
        assert_eq!(n.last4(), "4242");
        assert_eq!(n.brand(), CardBrand::Visa);
        assert_eq!(format!("{n:?}"), "CardNumber(****4242)");
    }

    #[test]
    fn recognises_brands() {
        for (pan, brand) in [
            ("5555555555554444", CardBrand::Mastercard),
            ("2223003122003222", CardBrand::Mastercard),
            ("6200000000000005", CardBrand::UnionPay),
            ("378282246310005", CardBrand::Amex),
            ("3530111333300000", CardBrand::Jcb),
            ("6011111111111117", CardBrand::Discover),
        ] {
            assert_eq!(CardNumber::parse(pan).expect(pan).brand(), brand, "{pan}");
        }
    }

    #[test]
    fn refuses_bad_numbers_with_a_reason() {
        for bad in [
            "",
            "4242",
            "4242424242424241",
            "42424242424242a2",
            "12345678901234567890",
        ] {
            let err = CardNumber::parse(bad).expect_err(bad);
            assert_eq!(err.reason, "INVALID_CARD_NUMBER");
            assert!(!err.message.contains("4242424242"), "no digits in messages");
        }
    }

    #[test]
    fn expiry_rules_name_the_part_at_fault() {
        let today = LocalDate {
            year: 2026,
            month: 11,
            day: 25,
        };
        let parse = |m, y| parse_expiry(m, y, today, ("month", "year"));
        let fields = |m, y| -> Vec<&str> {
            parse(m, y)
                .expect_err("refused")
                .violations()
                .iter()
                .map(|v| v.field)
                .collect()
        };
        assert!(parse(11, 2026).is_ok(), "this month is fine");
        assert_eq!(fields(10, 2026), ["month"], "last month has expired");
        assert_eq!(fields(12, 2020), ["year"], "an earlier year has expired");
        assert_eq!(fields(13, 2027), ["month"]);
        assert_eq!(fields(1, 27), ["year"], "two-digit year");
        assert_eq!(fields(1, 2047), ["year"], "too far away");
        assert_eq!(fields(0, 30), ["month", "year"], "both wrong");
        assert_eq!(
            parse(0, 2027).expect_err("month 0").first().reason,
            "INVALID_EXPIRY"
        );
    }

    #[test]
    fn cvv_length_depends_on_brand() {
        let visa = Some(CardBrand::Visa);
        assert!(Cvv::parse("123", visa).is_ok());
        assert!(Cvv::parse("1234", visa).is_err());
        assert!(Cvv::parse("1234", Some(CardBrand::Amex)).is_ok());
        assert!(Cvv::parse("12a", visa).is_err());
        assert!(Cvv::parse("1234", None).is_ok(), "brand unknown");
        assert!(Cvv::parse("12", None).is_err());
        assert_eq!(
            format!("{:?}", Cvv::parse("123", visa).expect("ok")),
            "Cvv(***)"
        );
    }

    /// Appends the digit that makes `body` pass the Luhn check.
    fn with_check_digit(body: &str) -> String {
        (0..10)
            .map(|d| format!("{body}{d}"))
            .find(|n| luhn_valid(n))
            .expect("one digit always fits")
    }

    proptest! {
        #[test]
        fn every_number_with_its_check_digit_is_accepted(body in "[0-9]{11,18}") {
            let pan = with_check_digit(&body);
            prop_assert!(CardNumber::parse(&pan).is_ok());
        }

        #[test]
        fn changing_one_digit_breaks_the_check(body in "[0-9]{11,18}", pos in 0usize..19, delta in 1u8..10) {
            let pan = with_check_digit(&body);
            let pos = pos % pan.len();
            let mut bytes = pan.into_bytes();
            bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
            let changed = String::from_utf8(bytes).expect("ascii");
            prop_assert!(CardNumber::parse(&changed).is_err());
        }

        #[test]
        fn parsing_never_panics(raw in "\\PC{0,40}") {
            let _ = CardNumber::parse(&raw);
            let _ = Cvv::parse(&raw, Some(CardBrand::Visa));
        }
    }
}
