//! Card information as parsed from a request. The card number and CVV are
//! secrets: their `Debug` shows nothing but the last four digits.
use std::fmt;

use zeroize::Zeroizing;

use super::error::Invalid;

/// Card schemes, recognised from the leading digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardBrand {
    Visa,
    Mastercard,
    UnionPay,
    Amex,
    Jcb,
    Discover,
    Other,
}

impl CardBrand {
    fn of(digits: &str) -> Self {
        let prefix = |n: usize| {
            digits
                .get(..n)
                .and_then(|p| p.parse::<u32>().ok())
                .unwrap_or(0)
        };
        match (prefix(1), prefix(2), prefix(4)) {
            (4, _, _) => Self::Visa,
            (_, 34 | 37, _) => Self::Amex,
            (_, 51..=55, _) | (_, _, 2221..=2720) => Self::Mastercard,
            (_, 62, _) => Self::UnionPay,
            (_, _, 3528..=3589) => Self::Jcb,
            (_, 65, _) | (_, _, 6011) => Self::Discover,
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Visa => "VISA",
            Self::Mastercard => "MASTERCARD",
            Self::UnionPay => "UNIONPAY",
            Self::Amex => "AMEX",
            Self::Jcb => "JCB",
            Self::Discover => "DISCOVER",
            Self::Other => "OTHER",
        }
    }

    pub fn from_str_lossy(s: &str) -> Self {
        match s {
            "VISA" => Self::Visa,
            "MASTERCARD" => Self::Mastercard,
            "UNIONPAY" => Self::UnionPay,
            "AMEX" => Self::Amex,
            "JCB" => Self::Jcb,
            "DISCOVER" => Self::Discover,
            _ => Self::Other,
        }
    }
}

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

/// A card's expiry, valid through the end of its month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub month: u8,
    pub year: u16,
}

impl Expiry {
    /// `today` is (year, month) now; a card expiring this month is still good.
    pub fn parse(month: i32, year: i32, today: (i32, u8)) -> Result<Self, Invalid> {
        if !(1..=12).contains(&month) {
            return Err(Invalid::new(
                "INVALID_EXPIRY",
                "expiry month must be 1 to 12",
            ));
        }
        if !(2000..=2099).contains(&year) {
            return Err(Invalid::new(
                "INVALID_EXPIRY",
                "expiry year must have four digits, e.g. 2030",
            ));
        }
        if (year, month) < (today.0, i32::from(today.1)) {
            return Err(Invalid::new("INVALID_EXPIRY", "the card has expired"));
        }
        if year > today.0 + 20 {
            return Err(Invalid::new(
                "INVALID_EXPIRY",
                "expiry year is more than 20 years away",
            ));
        }
        Ok(Self {
            month: month as u8,
            year: year as u16,
        })
    }
}

/// A card verification value: never stored, never logged.
#[derive(Clone)]
pub struct Cvv(Zeroizing<String>);

impl Cvv {
    /// 3 digits, or 4 for American Express.
    pub fn parse(raw: &str, brand: CardBrand) -> Result<Self, Invalid> {
        let want = if brand == CardBrand::Amex { 4 } else { 3 };
        if raw.len() != want || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid::new(
                "INVALID_CVV",
                format!("CVV must be {want} digits"),
            ));
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
    fn expiry_rules() {
        let today = (2026, 11);
        assert!(Expiry::parse(11, 2026, today).is_ok(), "this month is fine");
        assert!(
            Expiry::parse(10, 2026, today).is_err(),
            "last month has expired"
        );
        assert!(Expiry::parse(13, 2027, today).is_err());
        assert!(Expiry::parse(1, 27, today).is_err(), "two-digit year");
        assert_eq!(
            Expiry::parse(0, 2027, today).expect_err("month 0").reason,
            "INVALID_EXPIRY"
        );
    }

    #[test]
    fn cvv_length_depends_on_brand() {
        assert!(Cvv::parse("123", CardBrand::Visa).is_ok());
        assert!(Cvv::parse("1234", CardBrand::Visa).is_err());
        assert!(Cvv::parse("1234", CardBrand::Amex).is_ok());
        assert!(Cvv::parse("12a", CardBrand::Visa).is_err());
        assert_eq!(
            format!("{:?}", Cvv::parse("123", CardBrand::Visa).expect("ok")),
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
            let _ = Cvv::parse(&raw, CardBrand::Visa);
        }
    }
}
