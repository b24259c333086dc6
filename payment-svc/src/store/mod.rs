//! payment-svc's database: one [`Store`] trait, a SQLite implementation (the
//! embedded default) and a PostgreSQL one, each with its own migrations,
//! chosen by the URL scheme at start-up.
//!
//! Methods are single-purpose; the few that must change several rows at once
//! (a session completing with its binding and payment, a payment's
//! reservation) are one method each so every backend makes them atomic.
use std::sync::Arc;

use async_trait::async_trait;

mod common;
pub mod models;
mod postgres;
mod sqlite;

pub use models::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key is already taken (e.g. a merchant id or certificate identity).
    #[error("already exists: {0}")]
    Conflict(String),
    /// A row changed since it was read (optimistic concurrency).
    #[error("the record changed concurrently")]
    VersionConflict,
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Turns unique-key violations into [`StoreError::Conflict`] in one place.
pub(crate) fn classify(err: sqlx::Error) -> StoreError {
    if paybind_shared::db::is_unique_violation(&err) {
        return StoreError::Conflict(err.to_string());
    }
    StoreError::Database(err)
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// "sqlite" or "postgres", for logs and the benchmark report.
    fn backend(&self) -> &'static str;

    // Merchants.
    async fn insert_merchant(&self, merchant: &MerchantRow) -> StoreResult<()>;
    async fn merchant_by_cert_identity(&self, identity: &str) -> StoreResult<Option<MerchantRow>>;
    async fn list_merchants(&self) -> StoreResult<Vec<MerchantRow>>;

    // Bind sessions.
    /// Inserts a session, or returns the one already created with the same
    /// (merchant, idempotency key).
    async fn insert_session(&self, session: &SessionRow) -> StoreResult<Inserted<SessionRow>>;
    async fn get_session(
        &self,
        merchant_id: &str,
        session_id: &str,
    ) -> StoreResult<Option<SessionRow>>;
    /// Applies a session transition atomically with what comes with it: a new
    /// binding (or the existing active one for the same card), a new payment,
    /// a payment's final state. Fails with `VersionConflict` (changing
    /// nothing) if the session's version is no longer `session.version`.
    /// Returns the session as written.
    async fn apply_session_change(&self, change: SessionChange) -> StoreResult<SessionRow>;

    // Bindings.
    async fn get_binding(
        &self,
        merchant_id: &str,
        binding_id: &str,
    ) -> StoreResult<Option<BindingRow>>;
    async fn list_bindings(&self, query: &BindingQuery) -> StoreResult<Vec<BindingRow>>;
    /// Marks a binding revoked (if active) and returns it.
    async fn revoke_binding(
        &self,
        merchant_id: &str,
        binding_id: &str,
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<Option<BindingRow>>;

    // Payments.
    /// The hot path, for a batch of payments committed together: for each,
    /// one atomic step that checks the binding (merchant, user, status,
    /// currency, limits), claims the idempotency key, records the payment as
    /// PENDING and counts it against today's limit. One outcome per request,
    /// in order.
    async fn reserve_payments(
        &self,
        requests: &[ReservePayment],
    ) -> StoreResult<Vec<ReserveOutcome>>;
    /// Records the outcomes of PENDING payments, many at once (one commit);
    /// a decline gives its amount back to today's limit. Returns the payments
    /// that were updated; one that was not PENDING any more is left out.
    async fn finalize_payments(&self, outcomes: &[PaymentOutcome]) -> StoreResult<Vec<PaymentRow>>;
    async fn get_payment(
        &self,
        merchant_id: &str,
        payment_id: &str,
    ) -> StoreResult<Option<PaymentRow>>;
    /// A payment by id alone (for the service itself, never for a caller).
    async fn payment_by_id(&self, payment_id: &str) -> StoreResult<Option<PaymentRow>>;

    // Refunds.
    /// Checks and reserves a refund: the payment must be SUCCEEDED and the
    /// amount at most what is left; claims the idempotency key.
    async fn reserve_refund(&self, request: &ReserveRefund) -> StoreResult<RefundReserveOutcome>;
    /// Records a PENDING refund's outcome; a failure makes the amount
    /// refundable again.
    async fn finalize_refund(
        &self,
        refund_id: &str,
        succeeded: bool,
        now_ms: i64,
    ) -> StoreResult<(RefundRow, PaymentRow)>;
}

/// Connects to the database the URL names (`sqlite:…` or `postgres://…`),
/// creating a SQLite file if missing, and brings the schema up to date.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(
            sqlite::SqliteStore::connect(url, max_connections).await?,
        ))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            postgres::PgStore::connect(url, max_connections).await?,
        ))
    } else {
        anyhow::bail!("database.url must start with sqlite: or postgres:// (got another scheme)")
    }
}
