//! payment-svc as the shop's domain sees it: what the shop asks of it, what
//! comes back, and how a call can fail. `payment_client` implements
//! [`PaymentGateway`] over gRPC; nothing here knows the wire.
use std::{collections::BTreeMap, fmt, time::Duration};

use async_trait::async_trait;
use paybind_shared::{
    ids::{BindingId, BindingToken, IdempotencyKey, MerchantUserId, OrderId, PaymentId, SessionId},
    model::{BindingStatus, CardBrand, CardExpiry, PaymentStatus, Presentation, SessionStatus},
    money::{Currency, Money},
};

/// The kinds of definite refusal payment-svc can answer with (its gRPC
/// status codes that mean "this was not done, and will not be").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    InvalidArgument,
    FailedPrecondition,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    Unauthenticated,
    OutOfRange,
    Unimplemented,
}

/// payment-svc's refusal, whole: the shop passes it on unchanged, so its
/// callers see payment-svc's reason (e.g. CARD_DECLINED, WRONG_CODE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    /// The `ErrorInfo.reason`, e.g. `BINDING_REVOKED`.
    pub reason: String,
    pub message: String,
    pub metadata: BTreeMap<String, String>,
    /// The rejected request fields and why.
    pub violations: Vec<(String, String)>,
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PaymentError {
    /// payment-svc refused the call; it did nothing.
    #[error("payment-svc refused: {} ({})", .0.message, .0.reason)]
    Refused(Refusal),
    /// payment-svc could not be reached.
    #[error("payment-svc is unavailable")]
    Unavailable,
    /// No answer came back in time, or payment-svc failed on its side:
    /// the call may or may not have taken effect. Every call is idempotent,
    /// so it is sent again later, never taken as refused.
    #[error("the outcome at payment-svc is not known")]
    UnknownOutcome,
}

impl PaymentError {
    /// The refusal's reason, if this is a refusal.
    pub fn refusal_reason(&self) -> Option<&str> {
        match self {
            Self::Refused(r) => Some(&r.reason),
            _ => None,
        }
    }
}

pub type PaymentResult<T> = Result<T, PaymentError>;

/// What the shop knows of its user, to prefill the binding page.
#[derive(Debug, Clone, Default)]
pub struct Prefill {
    pub full_name: String,
    pub phone: String,
}

/// A binding request (BindAndPay when `purchase` is set).
#[derive(Debug, Clone)]
pub struct BindingRequest {
    pub user_id: MerchantUserId,
    pub presentation: Presentation,
    pub return_url: String,
    pub prefill: Prefill,
    pub purchase: Option<Purchase>,
    pub idempotency_key: IdempotencyKey,
}

#[derive(Debug, Clone)]
pub struct Purchase {
    pub order_id: OrderId,
    pub amount: Money,
    pub description: String,
}

/// The shopper's information, forwarded as entered (direct entry):
/// payment-svc parses and checks it. Secrets: `Debug` shows none of it.
#[derive(Clone)]
pub struct ShopperEntry {
    pub full_name: String,
    pub id_number: String,
    pub phone: String,
    pub card_number: String,
    pub expiry_month: i32,
    pub expiry_year: i32,
    pub cvv: String,
}

impl fmt::Debug for ShopperEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShopperEntry(***)")
    }
}

/// A binding's auth-free limits, with what is left today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsToday {
    pub per_payment: Money,
    pub per_day: Money,
    /// In the limits' currency, minor units; may be zero.
    pub remaining_today: i64,
}

impl LimitsToday {
    pub fn currency(&self) -> Currency {
        self.per_day.currency()
    }
}

/// A binding at payment-svc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingInfo {
    pub id: BindingId,
    pub token: BindingToken,
    pub status: BindingStatus,
    pub brand: CardBrand,
    pub last4: String,
    pub expiry: CardExpiry,
    pub limits: Option<LimitsToday>,
}

/// A payment at payment-svc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentInfo {
    pub id: PaymentId,
    pub status: PaymentStatus,
    /// When declined: the card network's reason.
    pub decline_reason: String,
    /// Refunded so far, minor units.
    pub refunded_minor: i64,
}

/// A bind session at payment-svc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: SessionId,
    pub status: SessionStatus,
    pub page_url: String,
    pub expire_ms: i64,
    /// Masked, while a code is outstanding.
    pub code_sent_to: String,
    pub binding: Option<BindingInfo>,
    pub payment: Option<PaymentInfo>,
}

/// A payment to make with a user's token.
#[derive(Debug, Clone)]
pub struct TokenPayment {
    pub token: BindingToken,
    pub user_id: MerchantUserId,
    pub order_id: OrderId,
    pub amount: Money,
    pub description: String,
    pub idempotency_key: IdempotencyKey,
}

/// A refund to ask for.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub payment_id: PaymentId,
    pub amount: Money,
    pub reason: String,
    pub idempotency_key: IdempotencyKey,
}

/// An event of payment-svc's feed, as the shop reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEvent {
    pub id: String,
    /// As payment-svc names it, e.g. `EVENT_TYPE_BINDING_REVOKED`.
    pub event_type: String,
    /// Where it is in the feed (opaque).
    pub cursor: String,
    pub resource_id: String,
    /// Grows with each change of the resource.
    pub version: i64,
    pub change: super::feed::FeedChange,
}

/// What a followed feed brings: an event, or word that it is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedItem {
    Event(FeedEvent),
    Heartbeat,
}

/// The feed followed live, until payment-svc ends it or it breaks.
pub type FeedStream = futures::stream::BoxStream<'static, PaymentResult<FeedItem>>;

/// payment-svc, as the shop uses it. Every call is a read or carries an
/// idempotency key, so an implementation may retry what failed without an
/// answer.
#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// Bind, or BindAndPay with a purchase.
    async fn open_session(&self, request: BindingRequest) -> PaymentResult<SessionInfo>;
    async fn get_session(&self, session_id: &SessionId) -> PaymentResult<SessionInfo>;
    async fn submit_entry(
        &self,
        session_id: &SessionId,
        entry: ShopperEntry,
    ) -> PaymentResult<SessionInfo>;
    /// Never retried: a wrong code would count twice.
    async fn verify_code(&self, session_id: &SessionId, code: &str) -> PaymentResult<SessionInfo>;
    async fn pay(&self, payment: TokenPayment) -> PaymentResult<PaymentInfo>;
    /// The payment after the refund.
    async fn refund(&self, refund: RefundRequest) -> PaymentResult<PaymentInfo>;
    async fn unbind(
        &self,
        token: &BindingToken,
        user_id: &MerchantUserId,
        reason: &str,
    ) -> PaymentResult<()>;
    /// All the user's bindings, revoked ones included.
    async fn bindings_of(&self, user_id: &MerchantUserId) -> PaymentResult<Vec<BindingInfo>>;
    /// The shop's events after `cursor` (empty: from the beginning), at
    /// most `page_size`.
    async fn events_after(&self, cursor: &str, page_size: i32) -> PaymentResult<Vec<FeedEvent>>;
    /// The shop's events after `cursor`, then each new one as it happens.
    async fn follow_events(&self, cursor: &str) -> PaymentResult<FeedStream>;
}
