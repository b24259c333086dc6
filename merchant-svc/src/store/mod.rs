//! merchant-svc's database: its users (with the binding token each one has),
//! orders and the bind sessions it started. One trait, SQLite and
//! PostgreSQL; it speaks the domain's types (`domain::model`), and rows,
//! column spellings and SQL stay in this module.
use std::sync::Arc;

use async_trait::async_trait;
use paybind_shared::{
    db::Backend,
    fields::PageCursor,
    ids::{BindingId, MerchantUserId, OrderId, SessionId},
    vault::Vault,
};

use crate::domain::feed::{AppliedEvent, EventOutcome, FeedPosition};
use crate::domain::model::{
    CardOnFile, OpenSession, Order, OrderTransition, PasswordHash, SessionEnd, User,
};
use paybind_shared::model::Presentation;

mod backends;
mod rows;

pub use paybind_shared::db::{StoreError, StoreResult};

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// What the connection pool holds now (for the metrics).
    fn pool_use(&self) -> paybind_shared::metrics::PoolUse;

    async fn insert_user(&self, user: &User) -> StoreResult<()>;
    /// `insert_user` for a shopper who signs up at the storefront: the user
    /// and the password in one statement.
    async fn insert_user_with_password(&self, user: &User, hash: &PasswordHash) -> StoreResult<()>;
    async fn get_user(&self, id: &MerchantUserId) -> StoreResult<Option<User>>;
    /// The user's password hash; `None` if there is no such user or it has
    /// no password (made over the gRPC API).
    async fn password_hash(&self, id: &MerchantUserId) -> StoreResult<Option<PasswordHash>>;
    /// `false` if there is no such user.
    async fn set_password_hash(
        &self,
        id: &MerchantUserId,
        hash: &PasswordHash,
    ) -> StoreResult<bool>;
    /// `false` if there is no such user.
    async fn set_page_presentation(
        &self,
        id: &MerchantUserId,
        presentation: Presentation,
    ) -> StoreResult<bool>;
    /// Stores (or, with `None`, forgets) the user's card on file; not a
    /// binding whose newest applied event is its revocation.
    async fn set_card(
        &self,
        user_id: &MerchantUserId,
        card: Option<&CardOnFile>,
    ) -> StoreResult<()>;
    /// Forgets the card only if it is still `binding_id` (a newer one stays).
    async fn clear_card_if(
        &self,
        user_id: &MerchantUserId,
        binding_id: &BindingId,
    ) -> StoreResult<()>;

    /// Inserts orders, each or the one that already has its idempotency key
    /// (with `false`), committed together (group commit).
    async fn insert_orders(&self, orders: &[Order]) -> StoreResult<Vec<(Order, bool)>>;
    async fn get_order(&self, id: &OrderId) -> StoreResult<Option<Order>>;
    async fn order_by_session(&self, session_id: &SessionId) -> StoreResult<Option<Order>>;
    /// Moves an order out of `from` (one of the given statuses); `None` if it
    /// was no longer in any of them.
    async fn update_order(&self, transition: &OrderTransition) -> StoreResult<Option<Order>>;
    /// `update_order` for a batch, committed together (group commit).
    async fn update_orders(
        &self,
        transitions: &[OrderTransition],
    ) -> StoreResult<Vec<Option<Order>>>;
    async fn set_refunded(
        &self,
        id: &OrderId,
        refunded_minor: i64,
        now_ms: i64,
    ) -> StoreResult<Option<Order>>;
    /// A user's orders, newest first, after `after`.
    async fn list_orders(
        &self,
        user_id: &MerchantUserId,
        after: Option<PageCursor>,
        limit: i64,
    ) -> StoreResult<Vec<Order>>;
    /// Orders PENDING_PAYMENT not touched since `before_ms`: for the settler.
    async fn stale_pending_orders(&self, before_ms: i64, limit: i64) -> StoreResult<Vec<Order>>;

    async fn insert_session(
        &self,
        id: &SessionId,
        user_id: &MerchantUserId,
        order_id: Option<&OrderId>,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// The user who started a session, if this shop started it.
    async fn session_user(&self, id: &SessionId) -> StoreResult<Option<MerchantUserId>>;
    /// Sessions without an outcome, created after `created_after_ms`, due
    /// for a check at `now_ms`; the longest due first.
    async fn sessions_due(
        &self,
        now_ms: i64,
        created_after_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<OpenSession>>;
    /// When to check a session without an outcome next.
    async fn set_session_next_check(&self, id: &SessionId, next_check_ms: i64) -> StoreResult<()>;
    /// Records that a session's outcome has been applied.
    async fn set_session_outcome(&self, id: &SessionId, end: SessionEnd) -> StoreResult<()>;

    // payment-svc's event feed.
    /// Where the shop is in the feed (empty cursor before the first event).
    async fn feed_position(&self) -> StoreResult<FeedPosition>;
    /// Moves the feed's cursor to `cursor` (events before it applied).
    async fn move_feed_position(&self, cursor: &str, now_ms: i64) -> StoreResult<()>;
    /// Starts the shop over at the oldest event payment-svc keeps (its
    /// stored cursor is older than that).
    async fn reset_feed_position(&self, now_ms: i64) -> StoreResult<()>;
    /// What became of an event, if it was applied before, and the newest
    /// version of its resource applied so far: one read.
    async fn event_seen(
        &self,
        event_id: &str,
        resource_id: &str,
    ) -> StoreResult<(Option<EventOutcome>, Option<i64>)>;
    /// Records an event as applied, raises its resource's version and (if
    /// `moves_cursor`: read from the feed, not pushed) moves the cursor to
    /// it, in one transaction. An event recorded before is left as it was
    /// (the cursor still moves).
    async fn record_event(&self, event: &AppliedEvent, moves_cursor: bool) -> StoreResult<()>;
    /// Records events as applied and raises their resources' versions, in
    /// one transaction; one recorded before is left as it was. With a
    /// `cursor` (events read from the feed together), the cursor moves
    /// there in the same transaction; pushed events leave it where it is.
    /// With no events nothing is written, the cursor included.
    async fn record_events(&self, events: &[AppliedEvent], cursor: Option<&str>)
        -> StoreResult<()>;
    /// `event_seen` for several events (event id, resource id), in one
    /// read; the answers in the same order.
    async fn events_seen(
        &self,
        events: &[(&str, &str)],
    ) -> StoreResult<Vec<(Option<EventOutcome>, Option<i64>)>>;
    /// Which of these orders still wait for their payment, in one read.
    async fn pending_orders(&self, ids: &[&OrderId]) -> StoreResult<Vec<OrderId>>;
    /// The latest events applied, newest first.
    async fn recent_events(&self, limit: i64) -> StoreResult<Vec<AppliedEvent>>;
}

/// Connects (and migrates) the shop's database; `vault` seals the binding
/// tokens at rest.
pub async fn connect(
    url: &str,
    max_connections: u32,
    vault: Arc<Vault>,
) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match Backend::of_url(url)? {
        Backend::Sqlite => {
            Arc::new(backends::SqliteStore::connect(url, max_connections, vault).await?)
        }
        Backend::Postgres => {
            Arc::new(backends::PgStore::connect(url, max_connections, vault).await?)
        }
    })
}
