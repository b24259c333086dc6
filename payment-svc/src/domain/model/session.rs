//! A bind session: one binding request and the shopper's way through it.
//!
//! ```text
//! Open --submit (card verified, code sent)--> AwaitingVerification
//! AwaitingVerification --right code, Bind--> Completed (binding)
//! AwaitingVerification --right code, BindAndPay--> Charging --approved--> Completed (binding + payment)
//!                                                            --declined--> Open (another card) | Failed
//! Open --card declined at verification--> Open | Failed (no attempts left)
//! AwaitingVerification --5 wrong codes--> Failed
//! any unfinished state past its expiry shows as Expired
//! ```
//! Each state carries exactly the data it has, so a session awaiting a code
//! cannot lack the card it will bind, and a completed one cannot lack its
//! binding.
use paybind_shared::{
    ids::{BindingId, IdempotencyKey, MerchantId, MerchantUserId, OrderId, PaymentId, SessionId},
    model::{Presentation, SessionStatus},
    money::Money,
    person::{FullName, Phone},
};

use super::binding::{Holder, VaultedCard};

/// Which of the two binding requests opened the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// The first binding request: bind a card.
    Bind,
    /// The second: bind a card and pay for an order with it.
    BindAndPay,
}

/// The order a BindAndPay session pays for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    pub order_id: OrderId,
    pub amount: Money,
    pub description: String,
}

/// What the shopper submitted, verified with the card network and sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub card: VaultedCard,
    pub holder: Holder,
}

/// The one-time code outstanding: only its keyed hash is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentCode {
    pub hash: String,
    pub expires_ms: i64,
    pub tries_left: u32,
    pub sent_ms: i64,
    /// Codes sent again after the first.
    pub resends: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    /// Waiting for the shopper's information.
    Open,
    /// The card was verified and a code sent to the phone.
    AwaitingVerification {
        submitted: Submitted,
        code: SentCode,
    },
    /// BindAndPay: the code was right and the charge is recorded as pending;
    /// its outcome is not recorded yet.
    Charging {
        submitted: Submitted,
        payment_id: PaymentId,
    },
    /// The binding exists (and, for BindAndPay, the payment succeeded).
    Completed {
        binding_id: BindingId,
        payment_id: Option<PaymentId>,
    },
    /// No attempts or tries left.
    Failed,
}

/// Why the last attempt failed, shown to the merchant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptError {
    /// The issuer did not verify the card and its holder (no detail given).
    CardNotVerified,
    /// BindAndPay's charge was declined.
    CardDeclined,
    WrongCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindSession {
    pub id: SessionId,
    pub merchant_id: MerchantId,
    pub merchant_user_id: MerchantUserId,
    pub presentation: Presentation,
    pub return_url: String,
    pub prefill_name: Option<FullName>,
    pub prefill_phone: Option<Phone>,
    /// Present exactly for BindAndPay.
    pub purchase: Option<Purchase>,
    pub idempotency_key: IdempotencyKey,
    pub request_hash: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// Card submissions left (a declined card uses one).
    pub attempts_left: u32,
    pub last_error: Option<AttemptError>,
    pub state: SessionState,
    /// The version it was read at; a change is written only over it.
    pub version: i64,
}

impl BindSession {
    pub fn kind(&self) -> SessionKind {
        match self.purchase {
            None => SessionKind::Bind,
            Some(_) => SessionKind::BindAndPay,
        }
    }

    /// The status merchants see at `now_ms` (Charging shows as awaiting
    /// verification; an unfinished session past its expiry as expired,
    /// except while a charge is in flight, which must still be finished).
    pub fn status_at(&self, now_ms: i64) -> SessionStatus {
        match &self.state {
            SessionState::Completed { .. } => SessionStatus::Completed,
            SessionState::Failed => SessionStatus::Failed,
            SessionState::Charging { .. } => SessionStatus::AwaitingVerification,
            _ if self.expires_ms <= now_ms => SessionStatus::Expired,
            SessionState::Open => SessionStatus::Open,
            SessionState::AwaitingVerification { .. } => SessionStatus::AwaitingVerification,
        }
    }

    /// The phone the outstanding code went to.
    pub fn code_sent_to(&self) -> Option<&Phone> {
        match &self.state {
            SessionState::AwaitingVerification { submitted, .. }
            | SessionState::Charging { submitted, .. } => Some(&submitted.holder.phone),
            _ => None,
        }
    }

    pub fn binding_id(&self) -> Option<&BindingId> {
        match &self.state {
            SessionState::Completed { binding_id, .. } => Some(binding_id),
            _ => None,
        }
    }

    /// The session's payment: being charged, or made.
    pub fn payment_id(&self) -> Option<&PaymentId> {
        match &self.state {
            SessionState::Charging { payment_id, .. } => Some(payment_id),
            SessionState::Completed { payment_id, .. } => payment_id.as_ref(),
            _ => None,
        }
    }
}
