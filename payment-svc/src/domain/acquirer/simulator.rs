//! The built-in acquirer: the simulated issuers' records (`test_cards.rs`)
//! and a ledger of charges and refunds, idempotent by id, optionally kept
//! in a journal file.
use std::{collections::HashMap, io::Write, path::Path, sync::Mutex};

use async_trait::async_trait;
use paybind_shared::{
    ids::{new_id, PaymentId, RefundId},
    money::Money,
    person::Phone,
};
use serde::{Deserialize, Serialize};

use super::{
    test_cards::{test_card, TestCard},
    Acquirer, AcquirerError, CardRef, DeclineReason, HolderClaim, Resolution, VerificationRefusal,
    VerifiedHolder, VerifyError,
};

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

/// Whether the claim is the issuer's record: the same ID number and phone,
/// and the same name up to letter case and spacing (as a bank clerk would
/// read it).
fn holds(record: &TestCard, claim: &HolderClaim<'_>) -> bool {
    let words = |name: &str| {
        name.split_whitespace()
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
    };
    claim.id_number.expose() == record.holder.id_number
        && claim.phone.e164() == record.holder.phone
        && words(claim.name.as_str()) == words(record.holder.name)
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
    async fn verify_cardholder(
        &self,
        card: &CardRef<'_>,
        holder: &HolderClaim<'_>,
    ) -> Result<VerifiedHolder, VerifyError> {
        let record = test_card(card.number.expose_digits())
            .ok_or(VerifyError::Refused(VerificationRefusal::NoRecord))?;
        if let Some(reason) = record.at_verification {
            return Err(VerifyError::Refused(VerificationRefusal::Card(reason)));
        }
        if !holds(record, holder) {
            return Err(VerifyError::Refused(VerificationRefusal::HolderMismatch));
        }
        Ok(VerifiedHolder {
            phone_on_file: Phone::from_stored(record.holder.phone.to_owned()),
        })
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
        let refusal = match test_card(card.number.expose_digits()) {
            Some(record) => record.at_charge.or(record.at_verification),
            None => Some(DeclineReason::DoNotHonor),
        };
        let (approved, declined) = match refusal {
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
    use crate::domain::{
        card::{CardNumber, Expiry},
        shopper::IdNumber,
    };
    use paybind_shared::{clock::LocalDate, money::Currency, person::FullName};

    fn card(n: &str) -> CardNumber {
        CardNumber::parse(n).expect("valid")
    }

    fn cny(amount: i64) -> Money {
        Money::new(amount, Currency::parse("CNY").expect("CNY")).expect("money")
    }

    struct Claim {
        name: FullName,
        id_number: IdNumber,
        phone: Phone,
    }

    impl Claim {
        fn of(name: &str, id_number: &str, phone: &str) -> Self {
            let today = LocalDate {
                year: 2026,
                month: 11,
                day: 26,
            };
            Self {
                name: FullName::parse(name).expect("name"),
                id_number: IdNumber::parse(id_number, today).expect("id"),
                phone: Phone::parse(phone).expect("phone"),
            }
        }

        fn zhang_san() -> Self {
            Self::of("Zhang San", "11010519491231002X", "13800138000")
        }

        fn get(&self) -> HolderClaim<'_> {
            HolderClaim {
                name: &self.name,
                id_number: &self.id_number,
                phone: &self.phone,
            }
        }
    }

    #[tokio::test]
    async fn only_the_holder_on_file_is_verified_and_the_code_goes_to_the_phone_on_file() {
        let sim = Simulator::new();
        let visa = card("4242424242424242");
        let r = CardRef {
            number: &visa,
            expiry: Expiry {
                month: 12,
                year: 2030,
            },
            cvv: None,
        };
        let verified = sim
            .verify_cardholder(&r, &Claim::zhang_san().get())
            .await
            .expect("the holder");
        assert_eq!(verified.phone_on_file.e164(), "+8613800138000");
        let same_name = Claim::of("  zhang   SAN ", "11010519491231002x", "+86 138 0013 8000");
        assert!(sim.verify_cardholder(&r, &same_name.get()).await.is_ok());

        let mismatch = Err(VerifyError::Refused(VerificationRefusal::HolderMismatch));
        for (what, claim) in [
            (
                "another phone",
                Claim::of("Zhang San", "11010519491231002X", "13900139000"),
            ),
            (
                "another ID number",
                Claim::of("Zhang San", "110101199003074477", "13800138000"),
            ),
            (
                "another name",
                Claim::of("Zhang Si", "11010519491231002X", "13800138000"),
            ),
            (
                "the holder of another card",
                Claim::of("Li Si", "110101199003074477", "13900139000"),
            ),
        ] {
            assert_eq!(
                sim.verify_cardholder(&r, &claim.get()).await,
                mismatch,
                "{what}"
            );
        }

        let unknown = card("4000000000000010");
        let r = CardRef {
            number: &unknown,
            ..r
        };
        assert_eq!(
            sim.verify_cardholder(&r, &Claim::zhang_san().get()).await,
            Err(VerifyError::Refused(VerificationRefusal::NoRecord)),
            "a valid number no issuer knows"
        );
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
        let holder = Claim::zhang_san();
        let ok = Box::leak(Box::new(card("4242424242424242")));
        let poor = Box::leak(Box::new(card("4000000000009995")));
        let bad = Box::leak(Box::new(card("4000000000000002")));
        assert!(sim.verify_cardholder(&r(ok), &holder.get()).await.is_ok());
        assert!(
            sim.verify_cardholder(&r(poor), &holder.get()).await.is_ok(),
            "binds"
        );
        assert_eq!(
            sim.verify_cardholder(&r(bad), &holder.get()).await,
            Err(VerifyError::Refused(VerificationRefusal::Card(
                DeclineReason::DoNotHonor
            )))
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
