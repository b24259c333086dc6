//! Payments and refunds.
use paybind_shared::{
    ids::{
        BindingId, IdempotencyKey, MerchantId, MerchantUserId, OrderId, PaymentId, RefundId,
        SessionId,
    },
    model::{PaymentStatus, RefundStatus},
    money::Money,
};

use crate::domain::acquirer::DeclineReason;

/// Where a payment is, with what each outcome brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentState {
    /// Recorded before the card network was asked; the outcome is not known.
    Pending,
    /// Charged: the acquirer's reference (refunds name it).
    Succeeded { acquirer_ref: String },
    /// Refused by the card network; nothing was charged.
    Declined { reason: DeclineReason },
}

impl PaymentState {
    pub fn status(&self) -> PaymentStatus {
        match self {
            Self::Pending => PaymentStatus::Pending,
            Self::Succeeded { .. } => PaymentStatus::Succeeded,
            Self::Declined { .. } => PaymentStatus::Declined,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: PaymentId,
    pub merchant_id: MerchantId,
    pub merchant_user_id: MerchantUserId,
    /// The binding charged; for a BindAndPay payment, the binding it made
    /// (none while it is pending or if it was declined).
    pub binding_id: Option<BindingId>,
    /// The BindAndPay session that made it.
    pub session_id: Option<SessionId>,
    pub order_id: OrderId,
    pub amount: Money,
    pub description: String,
    pub state: PaymentState,
    /// The day whose auth-free limit it counts against (none for the
    /// shopper-authenticated first payment of a BindAndPay).
    pub counted_day: Option<i64>,
    /// The sum of refunds, in minor units; never more than `amount`.
    pub refunded_minor: i64,
    /// The first payment of a BindAndPay session: the shopper verified it
    /// with a one-time code.
    pub shopper_authenticated: bool,
    /// For `Pay`: the key and request it was made with.
    pub idempotency_key: Option<IdempotencyKey>,
    pub request_hash: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl Payment {
    pub fn status(&self) -> PaymentStatus {
        self.state.status()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub id: RefundId,
    pub merchant_id: MerchantId,
    pub payment_id: PaymentId,
    pub amount: Money,
    pub status: RefundStatus,
    pub reason: String,
    pub idempotency_key: IdempotencyKey,
    pub request_hash: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}
