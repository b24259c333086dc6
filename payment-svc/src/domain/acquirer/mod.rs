//! The acquirer (card network, and through it the card's issuer) — the one
//! simulated part of paybind. The trait is what a real acquirer integration
//! implements; [`Simulator`] follows the documented test cards (README,
//! "Test cards", and `test_cards.rs`).
use std::fmt;

use async_trait::async_trait;
use paybind_shared::{
    ids::{PaymentId, RefundId},
    money::Money,
    person::{FullName, Phone},
};

use super::{
    card::{CardNumber, Cvv, Expiry},
    shopper::IdNumber,
};

mod simulator;
pub mod test_cards;
mod traced;

pub use simulator::Simulator;
pub use traced::Traced;

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

/// Why the issuer would not verify a card and its holder at binding time.
/// It stays in payment-svc's own records (`card_checks`): the merchant is
/// told only that the card could not be verified, so that no answer tells
/// a card tester which detail was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationRefusal {
    /// The card itself was refused (expired, wrong CVV, blocked…).
    Card(DeclineReason),
    /// The name, ID number or phone is not what the issuer has on file.
    HolderMismatch,
    /// No issuer knows the card.
    NoRecord,
}

impl VerificationRefusal {
    /// The spelling kept in `card_checks.outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Card(reason) => reason.as_str(),
            Self::HolderMismatch => "HOLDER_MISMATCH",
            Self::NoRecord => "NO_CARDHOLDER_RECORD",
        }
    }
}

impl fmt::Display for VerificationRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("not verified: {0}")]
    Refused(VerificationRefusal),
    /// No answer; the check may be made again.
    #[error("issuer unavailable: {0}")]
    Unavailable(String),
}

/// Who the shopper says holds the card: what the issuer matches against its
/// records (the four elements of a Chinese quick-pay binding, with the card).
pub struct HolderClaim<'a> {
    pub name: &'a FullName,
    pub id_number: &'a IdNumber,
    pub phone: &'a Phone,
}

/// The issuer's yes: the phone it has on file for the holder, the only one
/// a binding code may be sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedHolder {
    pub phone_on_file: Phone,
}

/// The card as the acquirer needs it. The CVV is present only at binding time.
pub struct CardRef<'a> {
    pub number: &'a CardNumber,
    pub expiry: Expiry,
    pub cvv: Option<&'a Cvv>,
}

#[async_trait]
pub trait Acquirer: Send + Sync + 'static {
    /// Asks the card's issuer, with no money moving (at binding time), to
    /// verify the card (standing, expiry, CVV) and that `holder` is its
    /// holder as on file. Answers the phone on file: the code that proves
    /// the shopper is the holder goes there, never to a phone the shopper
    /// typed.
    async fn verify_cardholder(
        &self,
        card: &CardRef<'_>,
        holder: &HolderClaim<'_>,
    ) -> Result<VerifiedHolder, VerifyError>;
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
