//! The shop's rules: users and their card on file, checkout (pay with the
//! token, or send BindAndPay), completing sessions, orders and refunds.
//! Everything about payment goes through payment-svc's gRPC API; the shop
//! keeps only the binding token and a card summary.
use std::sync::Arc;

use paybind_proto::payment::v1 as pb;
use paybind_shared::money::Currency;
use tonic::Status;

use paybind_shared::batch::Batcher;

use crate::{
    payment_client::PaymentClient,
    store::{OrderRow, OrderTransition, Store},
};

mod checkout;
mod orders;
pub mod users;

pub use checkout::CheckoutInput;

/// Order statuses as stored.
pub mod status {
    pub const PENDING_PAYMENT: &str = "PENDING_PAYMENT";
    pub const AWAITING_SHOPPER: &str = "AWAITING_SHOPPER";
    pub const PAID: &str = "PAID";
    pub const DECLINED: &str = "DECLINED";
    pub const CANCELLED: &str = "CANCELLED";
}

#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
        message: String,
    },
    #[error("no such user")]
    UserNotFound,
    #[error("a user with this id already exists")]
    UserExists,
    #[error("no such order")]
    OrderNotFound,
    #[error("no such bind session for this shop")]
    SessionNotFound,
    #[error("the user has no card on file")]
    NoCardOnFile,
    #[error("only a paid order can be refunded")]
    OrderNotRefundable,
    #[error("the idempotency key was used before with a different request")]
    IdempotencyKeyReused,
    /// payment-svc could not be reached; the order (if any) is kept and
    /// settled later.
    #[error("payment-svc is unavailable; the order is kept and will be settled")]
    PaymentUnavailable { order_id: Option<String> },
    /// payment-svc refused the call: its status is passed through.
    #[error("payment-svc: {0}")]
    Upstream(Status),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ShopError {
    /// Classifies a payment-svc error: a definite refusal to pass on, or an
    /// outcome not known yet (unreachable, or a fault on its side) — then an
    /// order is kept and sent again, never cancelled on a guess.
    pub fn from_payment(status: Status, order_id: Option<&str>) -> Self {
        let definite = matches!(
            status.code(),
            tonic::Code::InvalidArgument
                | tonic::Code::FailedPrecondition
                | tonic::Code::NotFound
                | tonic::Code::AlreadyExists
                | tonic::Code::PermissionDenied
                | tonic::Code::Unauthenticated
                | tonic::Code::OutOfRange
                | tonic::Code::Unimplemented
        );
        if !definite {
            tracing::warn!(code = ?status.code(), order_id, "payment-svc unavailable");
            Self::PaymentUnavailable {
                order_id: order_id.map(str::to_owned),
            }
        } else {
            Self::Upstream(status)
        }
    }
}

pub type ShopResult<T> = Result<T, ShopError>;

pub struct Shop {
    pub store: Arc<dyn Store>,
    pub payments: PaymentClient,
    pub currency: Currency,
    pub default_return_url: String,
    /// Checkout's two writes, each in batches (group commit).
    pub order_inserts: Batcher<OrderRow, (OrderRow, bool)>,
    pub order_updates: Batcher<OrderTransition, Option<OrderRow>>,
}

impl Shop {
    pub fn new(
        store: Arc<dyn Store>,
        payments: PaymentClient,
        currency: Currency,
        default_return_url: String,
    ) -> Self {
        // SQLite has one writer: a second batch in flight would only wait.
        let in_flight = if store.backend() == "sqlite" { 1 } else { 4 };
        let insert_store = store.clone();
        let order_inserts = Batcher::spawn(in_flight, move |orders: Vec<OrderRow>| {
            let store = insert_store.clone();
            async move {
                store
                    .insert_orders(&orders)
                    .await
                    .map_err(|e| e.to_string())
            }
        });
        let update_store = store.clone();
        let order_updates = Batcher::spawn(in_flight, move |transitions: Vec<OrderTransition>| {
            let store = update_store.clone();
            async move {
                store
                    .update_orders(&transitions)
                    .await
                    .map_err(|e| e.to_string())
            }
        });
        Self {
            store,
            payments,
            currency,
            default_return_url,
            order_inserts,
            order_updates,
        }
    }
}

/// The presentation as payment-svc's enum; unspecified means redirect.
fn presentation(value: i32) -> pb::Presentation {
    match pb::Presentation::try_from(value) {
        Ok(pb::Presentation::Unspecified) | Err(_) => pb::Presentation::Redirect,
        Ok(p) => p,
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> ShopError {
    ShopError::Invalid {
        field,
        reason: "INVALID_ARGUMENT",
        message: message.into(),
    }
}

/// The shop's ids: 1-64 characters of `[A-Za-z0-9._:@-]`.
fn identifier(raw: &str, field: &'static str) -> ShopResult<String> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:@".contains(&b));
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(invalid(
            field,
            format!("{field} must be 1 to 64 characters of letters, digits and . _ : @ -"),
        ))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
