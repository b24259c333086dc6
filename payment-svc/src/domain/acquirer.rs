//! The acquirer (card network) — the one simulated part of paybind. The trait
//! is what a real acquirer integration implements; [`Simulator`] follows the
//! documented test cards (README, "Test cards").
use std::{collections::HashMap, fmt, sync::Mutex};

use async_trait::async_trait;
use paybind_shared::{
    ids::{new_id, PaymentId, RefundId},
    money::Money,
};

use super::card::{CardNumber, Cvv, Expiry};

/// Why the card network refused a card or a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclineReason {
    InsufficientFunds,
    DoNotHonor,
    ExpiredCard,
    CvvMismatch,
    ProcessingError,
}

impl DeclineReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InsufficientFunds => "INSUFFICIENT_FUNDS",
            Self::DoNotHonor => "DO_NOT_HONOR",
            Self::ExpiredCard => "EXPIRED_CARD",
            Self::CvvMismatch => "CVV_MISMATCH",
            Self::ProcessingError => "PROCESSING_ERROR",
        }
    }
}

impl fmt::Display for DeclineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcquirerError {
    #[error("declined: {0}")]
    Declined(DeclineReason),
    /// No answer: the outcome is unknown, the same call may be retried (every
    /// call is idempotent by its id).
    #[error("acquirer unavailable: {0}")]
    Unavailable(String),
}

/// The card as the acquirer needs it. The CVV is present only at binding time.
pub struct CardRef<'a> {
    pub number: &'a CardNumber,
    pub expiry: Expiry,
    pub cvv: Option<&'a Cvv>,
}

#[async_trait]
pub trait Acquirer: Send + Sync + 'static {
    /// Checks the card with no money moving (at binding time).
    async fn verify(&self, card: &CardRef<'_>) -> Result<(), AcquirerError>;
    /// Charges `amount`; idempotent by `payment_id`. Returns the acquirer's
    /// reference for the charge.
    async fn charge(
        &self,
        payment_id: &PaymentId,
        card: &CardRef<'_>,
        amount: Money,
    ) -> Result<String, AcquirerError>;
    /// Returns `amount` of a charge; idempotent by `refund_id`.
    async fn refund(
        &self,
        refund_id: &RefundId,
        acquirer_ref: &str,
        amount: Money,
    ) -> Result<(), AcquirerError>;
}

/// What a test card does; every other valid number is approved.
pub fn test_card_behaviour(number: &str) -> (Option<DeclineReason>, Option<DeclineReason>) {
    // (declined at verification, declined at every charge)
    match number {
        "4000000000000002" => (Some(DeclineReason::DoNotHonor), None),
        "4000000000000069" => (Some(DeclineReason::ExpiredCard), None),
        "4000000000000127" => (Some(DeclineReason::CvvMismatch), None),
        "4000000000000119" => (Some(DeclineReason::ProcessingError), None),
        "4000000000009995" => (None, Some(DeclineReason::InsufficientFunds)),
        "4000000000000341" => (None, Some(DeclineReason::DoNotHonor)),
        _ => (None, None),
    }
}

#[derive(Debug, Clone)]
struct Charge {
    result: Result<String, AcquirerError>,
    amount: i64,
    refunded: i64,
}

/// The built-in acquirer: deterministic by card number, with a ledger that
/// makes charges and refunds idempotent by id, as a real acquirer's are.
#[derive(Default)]
pub struct Simulator {
    charges: Mutex<HashMap<String, Charge>>,
    refunds: Mutex<HashMap<String, i64>>,
}

impl Simulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many distinct charges were approved: what the shoppers were
    /// actually charged. Tests use it to prove nothing is charged twice.
    pub fn approved_charges(&self) -> usize {
        self.lock_charges()
            .values()
            .filter(|c| c.result.is_ok())
            .count()
    }

    /// Total approved amount, minus refunds, in minor units.
    pub fn net_charged(&self) -> i64 {
        self.lock_charges()
            .values()
            .filter(|c| c.result.is_ok())
            .map(|c| c.amount - c.refunded)
            .sum()
    }

    fn lock_charges(&self) -> std::sync::MutexGuard<'_, HashMap<String, Charge>> {
        self.charges.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Acquirer for Simulator {
    async fn verify(&self, card: &CardRef<'_>) -> Result<(), AcquirerError> {
        match test_card_behaviour(card.number.expose_digits()).0 {
            Some(reason) => Err(AcquirerError::Declined(reason)),
            None => Ok(()),
        }
    }

    async fn charge(
        &self,
        payment_id: &PaymentId,
        card: &CardRef<'_>,
        amount: Money,
    ) -> Result<String, AcquirerError> {
        let mut charges = self.lock_charges();
        if let Some(existing) = charges.get(payment_id.as_str()) {
            return existing.result.clone();
        }
        let (at_verify, at_charge) = test_card_behaviour(card.number.expose_digits());
        let result = match at_charge.or(at_verify) {
            Some(reason) => Err(AcquirerError::Declined(reason)),
            None => Ok(new_id("acq")),
        };
        charges.insert(
            payment_id.as_str().to_owned(),
            Charge {
                result: result.clone(),
                amount: amount.amount_minor(),
                refunded: 0,
            },
        );
        result
    }

    async fn refund(
        &self,
        refund_id: &RefundId,
        acquirer_ref: &str,
        amount: Money,
    ) -> Result<(), AcquirerError> {
        let mut refunds = self.refunds.lock().unwrap_or_else(|p| p.into_inner());
        if refunds.contains_key(refund_id.as_str()) {
            return Ok(());
        }
        let mut charges = self.lock_charges();
        let charge = charges
            .values_mut()
            .find(|c| c.result.as_deref() == Ok(acquirer_ref))
            .ok_or(AcquirerError::Declined(DeclineReason::ProcessingError))?;
        if charge.refunded + amount.amount_minor() > charge.amount {
            return Err(AcquirerError::Declined(DeclineReason::ProcessingError));
        }
        charge.refunded += amount.amount_minor();
        refunds.insert(refund_id.as_str().to_owned(), amount.amount_minor());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paybind_shared::money::Currency;

    fn card(n: &str) -> CardNumber {
        CardNumber::parse(n).expect("valid")
    }

    fn cny(amount: i64) -> Money {
        Money::new(amount, Currency::parse("CNY").expect("CNY")).expect("money")
    }

    #[tokio::test]
    async fn test_cards_behave_as_documented() {
        let sim = Simulator::new();
        let exp = Expiry {
            month: 12,
            year: 2030,
        };
        let r = |n: &'static CardNumber| CardRef {
            number: n,
            expiry: exp,
            cvv: None,
        };
        let ok = Box::leak(Box::new(card("4242424242424242")));
        let poor = Box::leak(Box::new(card("4000000000009995")));
        let bad = Box::leak(Box::new(card("4000000000000002")));
        assert!(sim.verify(&r(ok)).await.is_ok());
        assert!(sim.verify(&r(poor)).await.is_ok(), "binds");
        assert_eq!(
            sim.verify(&r(bad)).await,
            Err(AcquirerError::Declined(DeclineReason::DoNotHonor))
        );
        let (p1, p2) = (PaymentId::generate(), PaymentId::generate());
        let (r1, r2) = (RefundId::generate(), RefundId::generate());
        assert_eq!(
            sim.charge(&p1, &r(poor), cny(100)).await,
            Err(AcquirerError::Declined(DeclineReason::InsufficientFunds))
        );
        let first = sim.charge(&p2, &r(ok), cny(100)).await.expect("approved");
        let again = sim.charge(&p2, &r(ok), cny(100)).await.expect("same");
        assert_eq!(first, again, "idempotent by payment id");
        assert_eq!(sim.approved_charges(), 1);

        sim.refund(&r1, &first, cny(60)).await.expect("refund");
        sim.refund(&r1, &first, cny(60))
            .await
            .expect("replayed refund");
        assert!(
            sim.refund(&r2, &first, cny(41)).await.is_err(),
            "over the charge"
        );
        assert_eq!(sim.net_charged(), 40);
    }
}
