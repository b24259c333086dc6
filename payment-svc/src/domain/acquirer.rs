//! The acquirer (card network) — the one simulated part of paybind. The trait
//! is what a real acquirer integration implements; [`Simulator`] follows the
//! documented test cards (README, "Test cards").
use std::{collections::HashMap, fmt, io::Write, path::Path, sync::Mutex};

use async_trait::async_trait;
use paybind_shared::{
    ids::{new_id, PaymentId, RefundId},
    money::Money,
};
use serde::{Deserialize, Serialize};

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
    const ALL: [Self; 5] = [
        Self::InsufficientFunds,
        Self::DoNotHonor,
        Self::ExpiredCard,
        Self::CvvMismatch,
        Self::ProcessingError,
    ];

    /// The reason its code names (`INSUFFICIENT_FUNDS`, …).
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == code)
    }

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

/// Where a charge stands at the card network, once settled for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// It was charged: the acquirer's reference.
    Charged { acquirer_ref: String },
    /// It was refused.
    Declined(DeclineReason),
    /// The network never saw it, and now never will: a charge sent later
    /// under this payment id is refused.
    NeverCharged,
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
    /// Settles the charge of `payment_id` for good, for a payment whose
    /// charging process is gone: a charge the network made (or refused) is
    /// returned as it was; one it never saw is voided. Idempotent.
    async fn resolve(&self, payment_id: &PaymentId) -> Result<Resolution, AcquirerError>;
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

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Approved(String),
    Declined(DeclineReason),
    /// Resolved as never charged: a later charge is refused.
    Voided,
}

#[derive(Debug, Clone)]
struct Charge {
    outcome: Outcome,
    amount: i64,
    refunded: i64,
}

/// One line of the simulator's journal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Entry {
    Charge {
        id: String,
        approved: Option<String>,
        declined: Option<String>,
        amount: i64,
    },
    Void {
        id: String,
    },
    Refund {
        id: String,
        acquirer_ref: String,
        amount: i64,
    },
}

#[derive(Default)]
struct Ledger {
    charges: HashMap<String, Charge>,
    refunds: HashMap<String, i64>,
}

impl Ledger {
    fn apply(&mut self, entry: Entry) {
        match entry {
            Entry::Charge {
                id,
                approved,
                declined,
                amount,
            } => {
                let outcome = match (
                    approved,
                    declined.as_deref().and_then(DeclineReason::from_code),
                ) {
                    (Some(r), _) => Outcome::Approved(r),
                    (None, Some(reason)) => Outcome::Declined(reason),
                    (None, None) => Outcome::Declined(DeclineReason::ProcessingError),
                };
                self.charges.insert(
                    id,
                    Charge {
                        outcome,
                        amount,
                        refunded: 0,
                    },
                );
            }
            Entry::Void { id } => {
                self.charges.insert(
                    id,
                    Charge {
                        outcome: Outcome::Voided,
                        amount: 0,
                        refunded: 0,
                    },
                );
            }
            Entry::Refund {
                id,
                acquirer_ref,
                amount,
            } => {
                if let Some(c) = self
                    .charges
                    .values_mut()
                    .find(|c| c.outcome == Outcome::Approved(acquirer_ref.clone()))
                {
                    c.refunded += amount;
                }
                self.refunds.insert(id, amount);
            }
        }
    }
}

/// The built-in acquirer: deterministic by card number, with a ledger that
/// makes charges and refunds idempotent by id, as a real acquirer's are.
/// With a journal file the ledger outlives the process, as a real card
/// network's does: a payment-svc killed mid-charge finds on restart what
/// was charged.
#[derive(Default)]
pub struct Simulator {
    ledger: Mutex<Ledger>,
    journal: Option<Mutex<std::fs::File>>,
}

impl Simulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// A simulator whose ledger is kept in `path` (JSON lines), replayed at
    /// start and appended to before each answer.
    pub fn with_journal(path: &Path) -> anyhow::Result<Self> {
        let mut ledger = Ledger::default();
        if path.exists() {
            let text = std::fs::read_to_string(path)?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str::<Entry>(line) {
                    Ok(entry) => ledger.apply(entry),
                    // A line cut short by a crash mid-write: its answer was
                    // never given, so it is as if it never happened.
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping an unreadable acquirer journal line")
                    }
                }
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            ledger: Mutex::new(ledger),
            journal: Some(Mutex::new(file)),
        })
    }

    /// How many distinct charges were approved: what the shoppers were
    /// actually charged. Tests use it to prove nothing is charged twice.
    pub fn approved_charges(&self) -> usize {
        self.lock()
            .charges
            .values()
            .filter(|c| matches!(c.outcome, Outcome::Approved(_)))
            .count()
    }

    /// Total approved amount, minus refunds, in minor units.
    pub fn net_charged(&self) -> i64 {
        self.lock()
            .charges
            .values()
            .filter(|c| matches!(c.outcome, Outcome::Approved(_)))
            .map(|c| c.amount - c.refunded)
            .sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `entry` (journal first, then the ledger); the caller holds
    /// the ledger's lock, so the journal's order is the ledger's.
    fn record(&self, ledger: &mut Ledger, entry: Entry) -> Result<(), AcquirerError> {
        if let Some(journal) = &self.journal {
            let mut line = serde_json::to_vec(&entry)
                .map_err(|e| AcquirerError::Unavailable(e.to_string()))?;
            line.push(b'\n');
            journal
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .write_all(&line)
                .map_err(|e| AcquirerError::Unavailable(format!("journal: {e}")))?;
        }
        ledger.apply(entry);
        Ok(())
    }
}

fn answer(outcome: &Outcome) -> Result<String, AcquirerError> {
    match outcome {
        Outcome::Approved(r) => Ok(r.clone()),
        Outcome::Declined(reason) => Err(AcquirerError::Declined(*reason)),
        Outcome::Voided => Err(AcquirerError::Declined(DeclineReason::ProcessingError)),
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
        let mut ledger = self.lock();
        if let Some(existing) = ledger.charges.get(payment_id.as_str()) {
            return answer(&existing.outcome);
        }
        let (at_verify, at_charge) = test_card_behaviour(card.number.expose_digits());
        let (approved, declined) = match at_charge.or(at_verify) {
            Some(reason) => (None, Some(reason.as_str().to_owned())),
            None => (Some(new_id("acq")), None),
        };
        self.record(
            &mut ledger,
            Entry::Charge {
                id: payment_id.as_str().to_owned(),
                approved,
                declined,
                amount: amount.amount_minor(),
            },
        )?;
        answer(&ledger.charges[payment_id.as_str()].outcome)
    }

    async fn refund(
        &self,
        refund_id: &RefundId,
        acquirer_ref: &str,
        amount: Money,
    ) -> Result<(), AcquirerError> {
        let mut ledger = self.lock();
        if ledger.refunds.contains_key(refund_id.as_str()) {
            return Ok(());
        }
        let charge = ledger
            .charges
            .values()
            .find(|c| c.outcome == Outcome::Approved(acquirer_ref.to_owned()))
            .ok_or(AcquirerError::Declined(DeclineReason::ProcessingError))?;
        if charge.refunded + amount.amount_minor() > charge.amount {
            return Err(AcquirerError::Declined(DeclineReason::ProcessingError));
        }
        self.record(
            &mut ledger,
            Entry::Refund {
                id: refund_id.as_str().to_owned(),
                acquirer_ref: acquirer_ref.to_owned(),
                amount: amount.amount_minor(),
            },
        )
    }

    async fn resolve(&self, payment_id: &PaymentId) -> Result<Resolution, AcquirerError> {
        let mut ledger = self.lock();
        if !ledger.charges.contains_key(payment_id.as_str()) {
            self.record(
                &mut ledger,
                Entry::Void {
                    id: payment_id.as_str().to_owned(),
                },
            )?;
        }
        Ok(match &ledger.charges[payment_id.as_str()].outcome {
            Outcome::Approved(r) => Resolution::Charged {
                acquirer_ref: r.clone(),
            },
            Outcome::Declined(reason) => Resolution::Declined(*reason),
            Outcome::Voided => Resolution::NeverCharged,
        })
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

    #[tokio::test]
    async fn resolving_voids_what_was_never_charged_and_keeps_what_was() {
        let sim = Simulator::new();
        let ok = card("4242424242424242");
        let r = CardRef {
            number: &ok,
            expiry: Expiry {
                month: 12,
                year: 2030,
            },
            cvv: None,
        };
        let (charged, never) = (PaymentId::generate(), PaymentId::generate());
        let reference = sim.charge(&charged, &r, cny(100)).await.expect("approved");
        assert_eq!(
            sim.resolve(&charged).await,
            Ok(Resolution::Charged {
                acquirer_ref: reference
            })
        );
        assert_eq!(sim.resolve(&never).await, Ok(Resolution::NeverCharged));
        assert_eq!(
            sim.charge(&never, &r, cny(100)).await,
            Err(AcquirerError::Declined(DeclineReason::ProcessingError)),
            "a voided charge is refused when it comes late"
        );
        assert_eq!(sim.resolve(&never).await, Ok(Resolution::NeverCharged));
        assert_eq!(sim.approved_charges(), 1);
    }

    #[tokio::test]
    async fn the_journal_keeps_the_ledger_across_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        let ok = card("4242424242424242");
        let poor = card("4000000000009995");
        let exp = Expiry {
            month: 12,
            year: 2030,
        };
        let (p1, p2, p3) = (
            PaymentId::generate(),
            PaymentId::generate(),
            PaymentId::generate(),
        );
        let reference = {
            let sim = Simulator::with_journal(&path).expect("journal");
            let r = |n| CardRef {
                number: n,
                expiry: exp,
                cvv: None,
            };
            let reference = sim.charge(&p1, &r(&ok), cny(500)).await.expect("ok");
            let _ = sim.charge(&p2, &r(&poor), cny(500)).await;
            sim.resolve(&p3).await.expect("voided");
            sim.refund(&RefundId::generate(), &reference, cny(200))
                .await
                .expect("refund");
            reference
        };
        let again = Simulator::with_journal(&path).expect("replayed");
        assert_eq!(
            again.resolve(&p1).await,
            Ok(Resolution::Charged {
                acquirer_ref: reference
            })
        );
        assert_eq!(
            again.resolve(&p2).await,
            Ok(Resolution::Declined(DeclineReason::InsufficientFunds))
        );
        assert_eq!(again.resolve(&p3).await, Ok(Resolution::NeverCharged));
        assert_eq!(again.net_charged(), 300);
    }
}
