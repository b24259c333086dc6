//! The shop's rules: users and their card on file, checkout (pay with the
//! token, or send BindAndPay), completing sessions, orders and refunds.
//! Everything about payment goes through [`PaymentGateway`] (payment-svc);
//! the shop keeps only the binding token and a card summary. Nothing here
//! knows gRPC: requests arrive parsed into the types of `model`.
use std::sync::Arc;

use paybind_shared::{
    batch::{BatchError, Batcher},
    db::StoreError,
    fields::Rejected,
    ids::OrderId,
    metrics::BatchMetrics,
    money::Currency,
};

use crate::store::Store;

mod checkout;
#[cfg(test)]
pub mod fake;
pub mod feed;
pub mod model;
mod orders;
pub mod payment;
mod sessions;
mod shoppers;
mod users;

pub use checkout::CheckoutInput;
pub use orders::OrderListing;
pub use sessions::SessionOutcome;
pub use shoppers::Password;
pub use users::{KnownLimits, NewUser, UserView};

use model::{Order, OrderTransition, OrderUpdate};
use payment::{PaymentError, PaymentGateway, Refusal};

#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    /// One or more request fields were refused; nothing changed.
    #[error("{0}")]
    Invalid(#[from] Rejected),
    #[error("no such user")]
    UserNotFound,
    /// A storefront sign-in failed: no such user, no password, or another
    /// one (never said which).
    #[error("wrong user name or password")]
    WrongCredentials,
    /// Too many failed sign-ins for one user name lately.
    #[error("too many failed sign-ins; wait a few minutes")]
    TooManyAttempts,
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
    /// payment-svc could not be reached or did not answer; the order (if
    /// any) is kept and settled later.
    #[error("payment-svc is unavailable; the order is kept and will be settled")]
    PaymentUnavailable { order_id: Option<OrderId> },
    /// payment-svc refused the call: passed on as it is.
    #[error("payment-svc: {}", .0.message)]
    Refused(Refusal),
    /// The shop's database did not answer or broke off: safe to retry
    /// with the same idempotency key.
    #[error("the shop's database is unavailable; retry with the same idempotency key")]
    DatabaseUnavailable,
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for ShopError {
    fn from(e: StoreError) -> Self {
        if e.is_transient() {
            tracing::warn!(error = %e, "database unavailable");
            Self::DatabaseUnavailable
        } else {
            Self::Store(e)
        }
    }
}

impl From<BatchError<Arc<StoreError>>> for ShopError {
    fn from(e: BatchError<Arc<StoreError>>) -> Self {
        match e {
            BatchError::Write(e) if e.is_transient() => {
                tracing::warn!(error = %e, "database unavailable");
                Self::DatabaseUnavailable
            }
            other => Self::Internal(anyhow::anyhow!("{other}")),
        }
    }
}

impl ShopError {
    /// A payment-svc failure: a definite refusal to pass on, or an outcome
    /// not known yet (unreachable, or a fault on its side): then an order is
    /// kept and sent again, never cancelled on a guess.
    pub fn from_payment(err: PaymentError, order_id: Option<&OrderId>) -> Self {
        match err {
            PaymentError::Refused(refusal) => Self::Refused(refusal),
            other => {
                tracing::warn!(error = %other, order_id = ?order_id.map(OrderId::as_str), "payment-svc unavailable");
                Self::PaymentUnavailable {
                    order_id: order_id.cloned(),
                }
            }
        }
    }
}

impl From<PaymentError> for ShopError {
    fn from(err: PaymentError) -> Self {
        Self::from_payment(err, None)
    }
}

pub type ShopResult<T> = Result<T, ShopError>;

pub struct Shop {
    pub store: Arc<dyn Store>,
    pub payments: Arc<dyn PaymentGateway>,
    pub currency: Currency,
    pub default_return_url: String,
    /// Checkout's two writes, each in batches (group commit).
    pub order_inserts: Batcher<Order, (Order, bool), Arc<StoreError>>,
    pub order_updates: Batcher<OrderTransition, Option<Order>, Arc<StoreError>>,
    /// The last limits read per card (GetUser shows them when payment-svc
    /// is slow).
    limits: users::LimitsCache,
    /// Shoppers' passwords at the storefront.
    passwords: shoppers::Passwords,
    /// Events being applied now: the pushed copy and the streamed copy of
    /// an event are applied one after the other, not side by side.
    applying: feed::Turns,
    /// Events recorded lately: the second copy of each costs no read.
    recently_applied: feed::RecentlyApplied,
    /// Orders a checkout of this process is paying with the card on file
    /// now: their payment's event waits for it (`feed::ORDER_WAIT` at most)
    /// and then finds them settled, or settles them if it could not.
    paying: feed::Turns,
}

impl Shop {
    /// `batches` gets the size of each group-commit batch.
    pub fn new(
        store: Arc<dyn Store>,
        payments: Arc<dyn PaymentGateway>,
        currency: Currency,
        default_return_url: String,
        batches: BatchMetrics,
    ) -> Self {
        let in_flight = store.backend().batches_in_flight();
        let insert_store = store.clone();
        let insert_batches = batches.clone();
        let order_inserts = Batcher::spawn(in_flight, move |orders: Vec<Order>| {
            let store = insert_store.clone();
            insert_batches.observe("order_inserts", orders.len());
            async move { store.insert_orders(&orders).await.map_err(Arc::new) }
        });
        let update_store = store.clone();
        let order_updates = Batcher::spawn(in_flight, move |transitions: Vec<OrderTransition>| {
            let store = update_store.clone();
            batches.observe("order_updates", transitions.len());
            async move { store.update_orders(&transitions).await.map_err(Arc::new) }
        });
        Self {
            store,
            payments,
            currency,
            default_return_url,
            order_inserts,
            order_updates,
            limits: users::LimitsCache::default(),
            passwords: shoppers::Passwords::default(),
            applying: feed::Turns::default(),
            recently_applied: feed::RecentlyApplied::default(),
            paying: Default::default(),
        }
    }

    /// Where a binding page returns to: the one asked for, or the shop's.
    fn return_url(&self, requested: &str) -> String {
        if requested.is_empty() {
            self.default_return_url.clone()
        } else {
            requested.to_owned()
        }
    }

    /// Moves an order out of `from`; `None` if it was no longer there.
    async fn transition(
        &self,
        order_id: &OrderId,
        from: &[model::OrderStatus],
        update: OrderUpdate,
    ) -> ShopResult<Option<Order>> {
        Ok(self
            .store
            .update_order(&OrderTransition {
                order_id: order_id.clone(),
                from: from.to_vec(),
                update,
                now_ms: paybind_shared::clock::now_ms(),
            })
            .await?)
    }
}
