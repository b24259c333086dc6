//! The contract's vocabulary as Rust enums, spoken by both services' domains.
//! Each service's `store` maps them to its columns and `grpc` to the wire;
//! here they have no spelling at all.

/// How the binding page is shown to the shopper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Presentation {
    Redirect,
    Embedded,
    Popup,
}

/// Card schemes, recognised from a card number's leading digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// The scheme of a card number (digits only).
    pub fn of(digits: &str) -> Self {
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
}

/// Where a bind session is, as merchants see it. (payment-svc keeps a finer
/// state machine; a session past its expiry shows as `Expired`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    Open,
    AwaitingVerification,
    Completed,
    Failed,
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    /// Sent to the card network; the outcome is not known yet.
    Pending,
    Succeeded,
    Declined,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindingStatus {
    Active,
    Revoked,
}

/// A card's expiry month and year, as a card summary shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CardExpiry {
    pub month: u8,
    pub year: u16,
}

impl CardExpiry {
    /// Months since year 0 of the card's last valid month.
    pub fn month_index(&self) -> i64 {
        i64::from(self.year) * 12 + i64::from(self.month)
    }

    /// Whether the card is past its expiry in `year`/`month` (a card is
    /// valid through the end of its expiry month).
    pub fn expired_in(&self, year: i32, month: u8) -> bool {
        self.month_index() < i64::from(year) * 12 + i64::from(month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_is_valid_through_its_expiry_month() {
        let card = CardExpiry {
            month: 11,
            year: 2026,
        };
        assert!(!card.expired_in(2026, 10));
        assert!(!card.expired_in(2026, 11));
        assert!(card.expired_in(2026, 12));
        assert!(card.expired_in(2027, 1));
        let december = CardExpiry {
            month: 12,
            year: 2026,
        };
        assert!(!december.expired_in(2026, 12));
        assert!(december.expired_in(2027, 1));
    }

    #[test]
    fn brands_by_prefix() {
        assert_eq!(CardBrand::of("4242424242424242"), CardBrand::Visa);
        assert_eq!(CardBrand::of("5555555555554444"), CardBrand::Mastercard);
        assert_eq!(CardBrand::of("2221000000000009"), CardBrand::Mastercard);
        assert_eq!(CardBrand::of("378282246310005"), CardBrand::Amex);
        assert_eq!(CardBrand::of("6200000000000005"), CardBrand::UnionPay);
        assert_eq!(CardBrand::of("3530111333300000"), CardBrand::Jcb);
        assert_eq!(CardBrand::of("6011111111111117"), CardBrand::Discover);
        assert_eq!(CardBrand::of("9999999999999995"), CardBrand::Other);
        assert_eq!(CardBrand::of(""), CardBrand::Other);
    }
}
