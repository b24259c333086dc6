//! payment-svc's database: one [`Store`] trait, a SQLite implementation (the
//! embedded default) and a PostgreSQL one, each with its own migrations,
//! chosen by the URL scheme at start-up.
//!
//! The store speaks the domain's types (`domain::model`): rows, column
//! spellings and SQL stay in this module. Methods are single-purpose; the
//! few that must change several rows at once (a session completing with its
//! binding and payment, a payment's reservation) are one method each so
//! every backend makes them atomic.
use std::sync::Arc;

use async_trait::async_trait;
use paybind_shared::{
    db::Backend,
    fields::PageCursor,
    ids::{
        BindingId, IdempotencyKey, MerchantId, MerchantUserId, OrderId, PaymentId, RefundId,
        SessionId,
    },
    money::Money,
    person::Phone,
    tls::CertFingerprint,
};

use crate::domain::{
    acquirer::VerificationRefusal,
    deliveries::{AttemptRecord, ClaimedDelivery, Delivery, DeliveryState, NotifyEndpoint},
    events::{Event, RevokedBy},
    model::{
        BindSession, Binding, ChargeableCard, Merchant, MerchantCertificate, MerchantStatus,
        Payment, PaymentState, Refund,
    },
    my_bindings::ShopperLogin,
    retention::{PurgeCutoffs, Purged},
    vault::Sealed,
    velocity::{Allowance, UsedUp},
};

mod common;
mod postgres;
mod rows;
mod sqlite;

pub use paybind_shared::db::{StoreError, StoreResult};

/// A stored row with a sealed card number, as a one-time pass sees it.
pub struct SealedRow<'a> {
    /// A binding's, or (false) a session's.
    pub is_binding: bool,
    pub id: &'a str,
    pub merchant_id: &'a MerchantId,
    pub merchant_user_id: &'a MerchantUserId,
    pub card_fingerprint: &'a str,
    pub pan: Sealed,
    pub id_number: Option<Sealed>,
}

/// What a one-time pass gives back for a [`SealedRow`].
pub struct Rekeyed {
    pub card_fingerprint: String,
    pub pan: Sealed,
    pub id_number: Option<Sealed>,
}

/// A row that was inserted, or the one that already held its unique key.
#[derive(Debug)]
pub enum Inserted<T> {
    New(T),
    Existing(T),
}

/// A session transition and what comes with it (see `Store::apply_session_change`).
#[derive(Debug)]
pub struct SessionChange {
    /// The new state; its `version` is the version it was read at.
    pub session: BindSession,
    /// A binding to create; if the user already has an active binding for the
    /// same card, that one is used instead, and the session (and
    /// `payment_final`'s payment) name it.
    pub new_binding: Option<Binding>,
    pub new_payment: Option<Payment>,
    pub payment_final: Option<PaymentOutcome>,
}

/// A payment's outcome from the acquirer: `Succeeded` or `Declined`.
#[derive(Debug, Clone)]
pub struct PaymentOutcome {
    pub payment_id: PaymentId,
    pub state: PaymentState,
    pub now_ms: i64,
}

/// The input of the hot path.
#[derive(Debug, Clone)]
pub struct ReservePayment {
    pub payment_id: PaymentId,
    pub merchant_id: MerchantId,
    pub binding_id: BindingId,
    pub merchant_user_id: MerchantUserId,
    pub order_id: OrderId,
    pub amount: Money,
    pub description: String,
    pub idempotency_key: IdempotencyKey,
    pub request_hash: String,
    /// Today's day number in the limits' time zone.
    pub day: i64,
    pub now_ms: i64,
}

/// Returned once per call and matched at once, so the size of its
/// variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ReserveOutcome {
    /// Recorded as PENDING and counted against today's limit.
    Reserved(ChargeableCard),
    /// The idempotency key was already used: the payment it made.
    Existing(Payment),
    /// No such binding for this merchant and user.
    NotFound,
    Revoked,
    CurrencyMismatch,
    LimitExceeded {
        per_payment_limit: i64,
        remaining_today: i64,
    },
    /// This request could not be written (the rest of its batch was).
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct ReserveRefund {
    pub refund_id: RefundId,
    pub merchant_id: MerchantId,
    pub payment_id: PaymentId,
    pub amount: Money,
    pub reason: String,
    pub idempotency_key: IdempotencyKey,
    pub request_hash: String,
    pub now_ms: i64,
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum RefundReserveOutcome {
    /// Recorded as PENDING; the payment's `refunded_minor` already includes it.
    Reserved {
        refund: Refund,
        payment: Payment,
    },
    Existing(Refund),
    PaymentNotFound,
    NotRefundable,
    CurrencyMismatch,
    Exceeds {
        refundable: i64,
    },
}

/// A charge in flight (migration 0004): a PENDING payment, and the
/// payment-svc process making its charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCharge {
    pub payment_id: PaymentId,
    /// The owning process's key; `None` for one left before owners were kept.
    pub owner: Option<i64>,
    pub created_ms: i64,
}

/// One answer of a card's issuer at binding time (migration 0005): kept
/// with its detail, which the merchant is never told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardCheck {
    pub merchant_id: MerchantId,
    pub session_id: SessionId,
    pub card_fingerprint: String,
    pub outcome: Result<(), VerificationRefusal>,
    pub checked_ms: i64,
}

/// One page of a user's bindings, newest first.
#[derive(Debug, Clone)]
pub struct BindingQuery {
    pub merchant_id: MerchantId,
    pub merchant_user_id: MerchantUserId,
    pub include_revoked: bool,
    pub after: Option<PageCursor>,
    pub limit: i64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// What the connection pool holds now (for the metrics).
    fn pool_use(&self) -> paybind_shared::metrics::PoolUse;
    /// Feed events this store wrote and committed since it started: each
    /// has its cursor (for the metrics).
    fn events_written(&self) -> u64;

    // Charges in flight, and whose they are.
    /// This process's key: the owner of the charges it makes.
    fn instance(&self) -> i64;
    /// Whether the process owning a charge is alive (one of unknown owner
    /// is not). On PostgreSQL each process holds an advisory lock on its
    /// key for as long as it lives; on SQLite one process owns the file.
    async fn owner_alive(&self, owner: Option<i64>) -> StoreResult<bool>;
    /// Charges in flight since before `created_before_ms`, oldest first.
    async fn pending_charges(
        &self,
        created_before_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<PendingCharge>>;
    async fn pending_charge(&self, payment_id: &PaymentId) -> StoreResult<Option<PendingCharge>>;
    /// Takes a charge over from `from`, its owner as read: `false` if
    /// another process took it first (or it was settled meanwhile).
    async fn claim_charge(&self, payment_id: &PaymentId, from: Option<i64>) -> StoreResult<bool>;
    /// Forgets a charge whose payment is settled already.
    async fn forget_charge(&self, payment_id: &PaymentId) -> StoreResult<()>;

    // Merchants and their certificates. Every change bumps the merchant
    // revision in its own transaction: replicas poll it to drop their caches.
    /// Registers a merchant together with its first certificate.
    async fn insert_merchant(
        &self,
        merchant: &Merchant,
        certificate: &MerchantCertificate,
        now_ms: i64,
    ) -> StoreResult<()>;
    async fn get_merchant(&self, id: &MerchantId) -> StoreResult<Option<Merchant>>;
    async fn list_merchants(&self) -> StoreResult<Vec<Merchant>>;
    /// The certificate registered with this fingerprint, and its merchant.
    async fn certificate_holder(
        &self,
        fingerprint: &CertFingerprint,
    ) -> StoreResult<Option<(Merchant, MerchantCertificate)>>;
    /// Every certificate registered for a merchant, newest first.
    async fn merchant_certificates(
        &self,
        merchant_id: &MerchantId,
    ) -> StoreResult<Vec<MerchantCertificate>>;
    /// `false` if there is no such merchant.
    async fn set_merchant_status(
        &self,
        merchant_id: &MerchantId,
        status: MerchantStatus,
    ) -> StoreResult<bool>;
    /// Registers another certificate for its merchant; every other one
    /// still in force is refused from `others_revoked_ms` on.
    async fn rotate_certificate(
        &self,
        certificate: &MerchantCertificate,
        others_revoked_ms: i64,
    ) -> StoreResult<()>;
    /// Refuses one certificate from `at_ms` on (`false` if unknown).
    async fn revoke_certificate(
        &self,
        fingerprint: &CertFingerprint,
        at_ms: i64,
    ) -> StoreResult<bool>;
    /// Moves whenever a merchant or certificate changes.
    async fn merchant_revision(&self) -> StoreResult<i64>;

    // One-time passes.
    /// Passes every row holding a sealed card number (active bindings,
    /// unfinished sessions) through `rekey` and stores what it gives back,
    /// once (recorded as `name` in `maintenance`; a replica that starts
    /// later, or at the same time, finds it done). The number of rows
    /// changed, or `None` if it was done already.
    /// Rows that keep a fingerprint but no number to compute it again from
    /// (revoked bindings, card checks) get `unlink(merchant, fingerprint)`.
    async fn rekey_sealed_cards(
        &self,
        name: &str,
        rekey: &(dyn for<'r> Fn(SealedRow<'r>) -> anyhow::Result<Rekeyed> + Sync),
        unlink: &(dyn for<'r> Fn(&'r MerchantId, &'r str) -> String + Sync),
        now_ms: i64,
    ) -> StoreResult<Option<u64>>;

    // Retention.
    /// Wipes the shopper data of sessions that expired unfinished before
    /// the cutoff (they read back as expired, with nothing submitted), and
    /// deletes card checks and velocity events older than theirs.
    async fn purge(&self, cutoffs: &PurgeCutoffs) -> StoreResult<Purged>;

    // Velocity limits.
    /// Records one event at `now_ms` for every allowance if none is used
    /// up — checked and recorded in one transaction, serialised per key so
    /// that replicas share the counts — and otherwise records nothing and
    /// says which one is used up. Events older than their window go.
    async fn take_allowances(
        &self,
        allowances: &[Allowance],
        now_ms: i64,
    ) -> StoreResult<Result<(), UsedUp>>;

    // Bind sessions.
    /// Keeps an issuer's answer to a card check.
    async fn record_card_check(&self, check: &CardCheck) -> StoreResult<()>;
    /// Inserts a session, or returns the one already created with the same
    /// (merchant, idempotency key).
    async fn insert_session(&self, session: &BindSession) -> StoreResult<Inserted<BindSession>>;
    /// A session by its id alone, whichever merchant opened it: for the
    /// binding page, which a shopper's browser opens with no certificate.
    async fn find_session(&self, session_id: &SessionId) -> StoreResult<Option<BindSession>>;
    async fn get_session(
        &self,
        merchant_id: &MerchantId,
        session_id: &SessionId,
    ) -> StoreResult<Option<BindSession>>;
    /// Applies a session transition atomically with what comes with it: a new
    /// binding (or the existing active one for the same card), a new payment,
    /// a payment's final state. Fails with `VersionConflict` (changing
    /// nothing) if the session's version is no longer `session.version`.
    /// Returns the session as written.
    async fn apply_session_change(&self, change: SessionChange) -> StoreResult<BindSession>;

    // Bindings.
    async fn get_binding(
        &self,
        merchant_id: &MerchantId,
        binding_id: &BindingId,
    ) -> StoreResult<Option<Binding>>;
    async fn list_bindings(&self, query: &BindingQuery) -> StoreResult<Vec<Binding>>;
    /// Marks a binding revoked (if active) and returns it; the revocation
    /// and its event are one transaction.
    async fn revoke_binding(
        &self,
        merchant_id: &MerchantId,
        binding_id: &BindingId,
        by: RevokedBy,
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<Option<Binding>>;

    /// Revokes (by EXPIRY) up to `limit` active bindings whose card's
    /// expiry month (`year * 12 + month`) is before `month`, each with its
    /// event, in one transaction; returns them.
    async fn expire_bindings(
        &self,
        month: i64,
        limit: i64,
        now_ms: i64,
    ) -> StoreResult<Vec<Binding>>;

    /// Marks up to `limit` sessions that expired unfinished by `now_ms` as
    /// told, each with its `BIND_SESSION_EXPIRED` event, in one
    /// transaction; how many.
    async fn expire_sessions(&self, now_ms: i64, limit: i64) -> StoreResult<u64>;

    // The shopper's page (`domain::my_bindings`).
    async fn insert_shopper_login(&self, login: &ShopperLogin) -> StoreResult<()>;
    async fn shopper_login(&self, id_hash: &str) -> StoreResult<Option<ShopperLogin>>;
    /// Writes a sign-in's new state (and key: `login.id_hash`) over the one
    /// stored under `id_hash_was`, if its tries left are still
    /// `tries_left_was`; `false` if another request changed it first.
    async fn update_shopper_login(
        &self,
        login: &ShopperLogin,
        id_hash_was: &str,
        tries_left_was: u32,
    ) -> StoreResult<bool>;
    async fn delete_shopper_login(&self, id_hash: &str) -> StoreResult<()>;
    /// Active bindings whose holder's phone on file is `phone`, at every
    /// merchant, newest first.
    async fn active_bindings_by_phone(&self, phone: &Phone) -> StoreResult<Vec<Binding>>;

    // The event feed. Events are written by the methods that make the
    // changes they tell of, in the same transaction.
    /// A merchant's events with a cursor above `after_seq`, in cursor order.
    async fn list_events(
        &self,
        merchant_id: &MerchantId,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<Event>>;
    /// Gives cursors to up to `limit` committed events that have none, in
    /// the order they were written; how many. Safe to run on every replica
    /// at once: one sequences at a time. Each event whose merchant has a
    /// notification endpoint gets a pending delivery, in the same
    /// transaction.
    async fn sequence_events(&self, limit: i64) -> StoreResult<u64>;

    // Pushing the feed (domain/deliveries.rs).
    /// Sets (or with `None` removes) a merchant's notification endpoint;
    /// false if there is no such merchant.
    async fn set_merchant_endpoint(
        &self,
        merchant_id: &MerchantId,
        endpoint: Option<&NotifyEndpoint>,
        now_ms: i64,
    ) -> StoreResult<bool>;
    async fn merchant_endpoint(
        &self,
        merchant_id: &MerchantId,
    ) -> StoreResult<Option<NotifyEndpoint>>;
    /// Claims up to `limit` pending deliveries due at `now_ms`, oldest
    /// first, none while an earlier event of its resource is pending: each
    /// gets its next attempt number and is kept from every other claim
    /// until `lease_until_ms`. An attempt whose lease ran out unrecorded is
    /// recorded as abandoned.
    async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Gives claimed deliveries back unattempted (this replica had no room
    /// to push them): due again at `now_ms`, with the attempt number they
    /// had before the claim.
    async fn release_deliveries(&self, seqs: &[i64], now_ms: i64) -> StoreResult<()>;
    /// Records attempts (one commit for all), and moves each delivery on
    /// if its attempt is still the delivery's latest (a slower replica's
    /// late record does not undo a later attempt); per record, false if it
    /// was not.
    async fn record_delivery_attempts(&self, records: &[AttemptRecord]) -> StoreResult<Vec<bool>>;
    async fn get_delivery(
        &self,
        merchant_id: &MerchantId,
        event_id: &str,
    ) -> StoreResult<Option<Delivery>>;
    /// A merchant's deliveries with an event cursor above `after_seq`, in
    /// cursor order, in `state` if given.
    async fn list_deliveries(
        &self,
        merchant_id: &MerchantId,
        state: Option<DeliveryState>,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>>;
    /// The highest cursor among the merchant's events the purge deleted
    /// (0: none).
    async fn event_horizon(&self, merchant_id: &MerchantId) -> StoreResult<i64>;
    /// Pending deliveries, all merchants.
    async fn delivery_backlog(&self) -> StoreResult<i64>;

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
    /// Records the outcomes of PENDING payments, many at once (one commit),
    /// each with its event; a decline gives its amount back to today's limit. Returns the payments
    /// that were updated; one that was not PENDING any more is left out.
    async fn finalize_payments(&self, outcomes: &[PaymentOutcome]) -> StoreResult<Vec<Payment>>;
    async fn get_payment(
        &self,
        merchant_id: &MerchantId,
        payment_id: &PaymentId,
    ) -> StoreResult<Option<Payment>>;
    /// A payment by id alone (for the service itself, never for a caller).
    async fn payment_by_id(&self, payment_id: &PaymentId) -> StoreResult<Option<Payment>>;

    // Refunds.
    /// Checks and reserves a refund: the payment must be SUCCEEDED and the
    /// amount at most what is left; claims the idempotency key.
    async fn reserve_refund(&self, request: &ReserveRefund) -> StoreResult<RefundReserveOutcome>;
    /// Records a PENDING refund's outcome; a failure makes the amount
    /// refundable again.
    async fn finalize_refund(
        &self,
        refund_id: &RefundId,
        succeeded: bool,
        now_ms: i64,
    ) -> StoreResult<(Refund, Payment)>;
}

/// Connects to the database the URL names (`sqlite:…` or `postgres://…`),
/// creating a SQLite file if missing, and brings the schema up to date.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match Backend::of_url(url)? {
        Backend::Sqlite => Arc::new(sqlite::SqliteStore::connect(url, max_connections).await?),
        Backend::Postgres => Arc::new(postgres::PgStore::connect(url, max_connections).await?),
    })
}
