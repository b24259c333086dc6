//! Exact money: integer minor units and an ISO 4217 currency. There are no
//! floats anywhere in paybind's money.
use std::fmt;

/// The largest amount any request may carry, in minor units (10^11: a billion
/// yuan, dollars or euros). Keeps every sum of a day's payments far from
/// `i64::MAX`.
pub const MAX_AMOUNT_MINOR: i64 = 100_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency {0:?} is not an ISO 4217 code")]
    UnknownCurrency(String),
    #[error("amount must be positive")]
    NotPositive,
    #[error("amount must be at most {MAX_AMOUNT_MINOR} minor units")]
    TooLarge,
}

/// An ISO 4217 currency that has minor units (funds and metals codes such as
/// XAU are refused: they have no defined minor unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// Parses an upper-case alphabetic code such as `"CNY"`.
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let unknown = || MoneyError::UnknownCurrency(code.chars().take(8).collect());
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(unknown());
        }
        let iso = iso_currency::Currency::from_code(code).ok_or_else(unknown)?;
        iso.exponent().ok_or_else(unknown)?;
        Ok(Self(iso))
    }

    pub fn code(self) -> &'static str {
        self.0.code()
    }

    /// Digits after the decimal point: 2 for CNY, 0 for JPY, 3 for BHD.
    pub fn minor_units(self) -> u32 {
        u32::from(self.0.exponent().unwrap_or(0))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A positive amount of money, at most [`MAX_AMOUNT_MINOR`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if amount_minor <= 0 {
            return Err(MoneyError::NotPositive);
        }
        if amount_minor > MAX_AMOUNT_MINOR {
            return Err(MoneyError::TooLarge);
        }
        Ok(Self {
            amount_minor,
            currency,
        })
    }

    /// Parses a wire amount: the currency first, so that an unknown code is
    /// reported as such even when the amount is also wrong.
    pub fn parse(amount_minor: i64, currency: &str) -> Result<Self, MoneyError> {
        let currency = Currency::parse(currency)?;
        Self::new(amount_minor, currency)
    }

    pub fn amount_minor(self) -> i64 {
        self.amount_minor
    }

    pub fn currency(self) -> Currency {
        self.currency
    }
}

/// Formats minor units as a decimal amount with the currency code, e.g.
/// `format_minor(1234, CNY)` is `"12.34 CNY"`; used on pages and in messages.
pub fn format_minor(amount_minor: i64, currency: Currency) -> String {
    let digits = currency.minor_units();
    if digits == 0 {
        return format!("{amount_minor} {currency}");
    }
    let scale = 10_i64.pow(digits);
    let sign = if amount_minor < 0 { "-" } else { "" };
    let abs = amount_minor.unsigned_abs();
    let scale = scale.unsigned_abs();
    format!(
        "{sign}{}.{:0width$} {currency}",
        abs / scale,
        abs % scale,
        width = digits as usize
    )
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_minor(self.amount_minor, self.currency))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cny() -> Currency {
        Currency::parse("CNY").expect("CNY")
    }

    #[test]
    fn currencies_know_their_minor_units() {
        assert_eq!(cny().minor_units(), 2);
        assert_eq!(Currency::parse("JPY").expect("JPY").minor_units(), 0);
        assert_eq!(Currency::parse("BHD").expect("BHD").minor_units(), 3);
    }

    #[test]
    fn unknown_or_malformed_currencies_are_refused() {
        for bad in ["", "cny", "CN", "CNYY", "ABC", "XAU", "ＣＮＹ"] {
            assert!(
                matches!(Currency::parse(bad), Err(MoneyError::UnknownCurrency(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn formats_by_minor_units() {
        assert_eq!(format_minor(1234, cny()), "12.34 CNY");
        assert_eq!(format_minor(5, cny()), "0.05 CNY");
        assert_eq!(
            format_minor(500, Currency::parse("JPY").expect("JPY")),
            "500 JPY"
        );
        assert_eq!(
            format_minor(1005, Currency::parse("KWD").expect("KWD")),
            "1.005 KWD"
        );
    }

    proptest! {
        #[test]
        fn any_amount_in_range_is_accepted_and_kept_exactly(amount in 1..=MAX_AMOUNT_MINOR) {
            let m = Money::new(amount, cny()).expect("in range");
            prop_assert_eq!(m.amount_minor(), amount);
        }

        #[test]
        fn amounts_out_of_range_are_refused(amount in prop_oneof![i64::MIN..=0, (MAX_AMOUNT_MINOR + 1)..=i64::MAX]) {
            prop_assert!(Money::new(amount, cny()).is_err());
        }

        #[test]
        fn formatting_round_trips(amount in 0..=MAX_AMOUNT_MINOR) {
            let text = format_minor(amount, cny());
            let number = text.trim_end_matches(" CNY").replace('.', "");
            prop_assert_eq!(number.parse::<i64>().expect("digits"), amount);
        }
    }
}
