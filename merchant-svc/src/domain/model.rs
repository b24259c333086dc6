//! What the shop keeps: its users (with the card each has on file at
//! payment-svc) and its orders. The store reads and writes these; `grpc`
//! shows them to the shop's other systems.
use paybind_shared::{
    ids::{BindingId, BindingToken, IdempotencyKey, MerchantUserId, OrderId, PaymentId, SessionId},
    model::{CardBrand, CardExpiry, Presentation, SessionStatus},
    money::Money,
    person::Phone,
};

/// The binding a user has at payment-svc, as the shop keeps it: the token
/// to pay with and a summary to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardOnFile {
    pub binding_id: BindingId,
    pub token: BindingToken,
    pub brand: CardBrand,
    pub last4: String,
    pub expiry: CardExpiry,
    pub bound_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: MerchantUserId,
    pub display_name: String,
    pub phone: Option<Phone>,
    pub created_ms: i64,
    pub card: Option<CardOnFile>,
    /// How the shopper wants binding pages shown (a storefront setting).
    pub presentation: Presentation,
}

/// A shopper's password as stored: an argon2 PHC string (algorithm,
/// parameters, salt and hash). Not a secret in itself, but never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// A hash made by the shop, or read back from its database.
    pub fn from_stored(phc: String) -> Self {
        Self(phc)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

/// How a bind session ended at payment-svc, once the shop has applied it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEnd {
    Completed,
    Failed,
    Expired,
}

impl SessionEnd {
    /// The end of a session in `status`; `None` while it is still open.
    pub fn of(status: SessionStatus) -> Option<Self> {
        match status {
            SessionStatus::Completed => Some(Self::Completed),
            SessionStatus::Failed => Some(Self::Failed),
            SessionStatus::Expired => Some(Self::Expired),
            SessionStatus::Open | SessionStatus::AwaitingVerification => None,
        }
    }
}

/// A bind session the shop started whose outcome it has not applied yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSession {
    pub id: SessionId,
    pub user_id: MerchantUserId,
    pub created_ms: i64,
}

/// Where an order is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// Sent (or to be sent again) to payment-svc; the outcome is not known.
    PendingPayment,
    /// Waiting for the shopper on the BindAndPay page.
    AwaitingShopper,
    Paid,
    /// Refused: a card network reason, or LIMIT_EXCEEDED.
    Declined,
    /// The BindAndPay session failed or expired, or payment-svc refused it.
    Cancelled,
}

/// The BindAndPay session an order waits on, and the page to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopperPage {
    pub session_id: SessionId,
    pub page_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub user_id: MerchantUserId,
    pub amount: Money,
    pub description: String,
    pub status: OrderStatus,
    pub decline_reason: Option<String>,
    pub payment_id: Option<PaymentId>,
    /// Refunded so far, in minor units.
    pub refunded_minor: i64,
    pub page: Option<ShopperPage>,
    pub paid_with_card_on_file: bool,
    /// How to show a BindAndPay page, if one is needed.
    pub presentation: Presentation,
    pub return_url: String,
    pub idempotency_key: IdempotencyKey,
    pub request_hash: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// An order's new state: only what a transition changes.
#[derive(Debug, Clone)]
pub struct OrderUpdate {
    pub status: OrderStatus,
    pub decline_reason: Option<String>,
    pub payment_id: Option<PaymentId>,
    pub page: Option<ShopperPage>,
    pub paid_with_card_on_file: bool,
}

impl OrderUpdate {
    pub fn to(status: OrderStatus) -> Self {
        Self {
            status,
            decline_reason: None,
            payment_id: None,
            page: None,
            paid_with_card_on_file: false,
        }
    }
}

/// One order's move out of `from` (see `Store::update_order`).
#[derive(Debug, Clone)]
pub struct OrderTransition {
    pub order_id: OrderId,
    pub from: Vec<OrderStatus>,
    pub update: OrderUpdate,
    pub now_ms: i64,
}
