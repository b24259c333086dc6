//! What the shop keeps: its users (with the card each has on file at
//! payment-svc) and its orders. The store reads and writes these; `grpc`
//! shows them to the shop's other systems.
use paybind_shared::{
    ids::{BindingId, BindingToken, IdempotencyKey, MerchantUserId, OrderId, PaymentId, SessionId},
    model::{CardBrand, CardExpiry, Presentation},
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
