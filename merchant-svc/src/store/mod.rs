//! merchant-svc's database: its users (with the binding token each one has),
//! orders and the bind sessions it started. One trait, SQLite and PostgreSQL.
use std::sync::Arc;

use async_trait::async_trait;

mod backends;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub display_name: String,
    pub phone: Option<String>,
    pub created_ms: i64,
    pub binding_id: Option<String>,
    pub binding_token: Option<String>,
    pub card_brand: Option<String>,
    pub card_last4: Option<String>,
    pub exp_month: Option<i64>,
    pub exp_year: Option<i64>,
    pub bound_ms: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderRow {
    pub id: String,
    pub user_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub description: String,
    pub status: String,
    pub decline_reason: Option<String>,
    pub payment_id: Option<String>,
    pub refunded_minor: i64,
    pub session_id: Option<String>,
    pub page_url: Option<String>,
    pub paid_with_card_on_file: bool,
    pub presentation: String,
    pub return_url: String,
    pub idempotency_key: String,
    pub request_hash: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// The binding a user has at payment-svc, as the shop keeps it.
#[derive(Debug, Clone)]
pub struct StoredBinding {
    pub binding_id: String,
    pub token: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: i64,
    pub exp_year: i64,
    pub bound_ms: i64,
}

/// An order's new state (only the fields a transition changes).
#[derive(Debug, Clone, Default)]
pub struct OrderUpdate {
    pub status: String,
    pub decline_reason: Option<String>,
    pub payment_id: Option<String>,
    pub session_id: Option<String>,
    pub page_url: Option<String>,
    pub paid_with_card_on_file: bool,
}

/// One order's move out of `from` (see `Store::update_order`).
#[derive(Debug, Clone)]
pub struct OrderTransition {
    pub order_id: String,
    pub from: Vec<&'static str>,
    pub update: OrderUpdate,
    pub now_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    Conflict,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

pub(crate) fn classify(err: sqlx::Error) -> StoreError {
    if paybind_shared::db::is_unique_violation(&err) {
        StoreError::Conflict
    } else {
        StoreError::Database(err)
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> &'static str;

    async fn insert_user(&self, user: &UserRow) -> StoreResult<()>;
    async fn get_user(&self, id: &str) -> StoreResult<Option<UserRow>>;
    /// Stores (or, with `None`, forgets) the user's active binding.
    async fn set_binding(&self, user_id: &str, binding: Option<&StoredBinding>) -> StoreResult<()>;
    /// Forgets the binding only if it is still `binding_id` (a newer one stays).
    async fn clear_binding_if(&self, user_id: &str, binding_id: &str) -> StoreResult<()>;

    /// Inserts an order, or returns the one that already has its idempotency key.
    async fn insert_order(&self, order: &OrderRow) -> StoreResult<(OrderRow, bool)>;
    /// `insert_order` for a batch, committed together (group commit).
    async fn insert_orders(&self, orders: &[OrderRow]) -> StoreResult<Vec<(OrderRow, bool)>>;
    async fn get_order(&self, id: &str) -> StoreResult<Option<OrderRow>>;
    async fn order_by_session(&self, session_id: &str) -> StoreResult<Option<OrderRow>>;
    /// Moves an order out of `from` (one of the given statuses); `None` if it
    /// was no longer in any of them.
    async fn update_order(
        &self,
        id: &str,
        from: &[&str],
        update: &OrderUpdate,
        now_ms: i64,
    ) -> StoreResult<Option<OrderRow>>;
    /// `update_order` for a batch, committed together (group commit).
    async fn update_orders(
        &self,
        transitions: &[OrderTransition],
    ) -> StoreResult<Vec<Option<OrderRow>>>;
    async fn set_refunded(
        &self,
        id: &str,
        refunded_minor: i64,
        now_ms: i64,
    ) -> StoreResult<Option<OrderRow>>;
    async fn list_orders(
        &self,
        user_id: &str,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> StoreResult<Vec<OrderRow>>;
    /// Orders PENDING_PAYMENT not touched since `before_ms`: for the settler.
    async fn stale_pending_orders(&self, before_ms: i64, limit: i64) -> StoreResult<Vec<OrderRow>>;

    async fn insert_session(
        &self,
        id: &str,
        user_id: &str,
        order_id: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// The user who started a session, if this shop started it.
    async fn session_user(&self, id: &str) -> StoreResult<Option<String>>;
}

pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(
            backends::SqliteStore::connect(url, max_connections).await?,
        ))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            backends::PgStore::connect(url, max_connections).await?,
        ))
    } else {
        anyhow::bail!("database.url must start with sqlite: or postgres://")
    }
}
