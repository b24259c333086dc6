//! SQLite, the embedded default: WAL, `synchronous = FULL` (money), the file
//! created on first run. All writes go through one connection, so SQLite's
//! single writer never meets a busy lock; reads use a pool of their own.
use sqlx::SqlitePool;

type Db = sqlx::Sqlite;

super::common::impl_store!(SqliteStore);

/// An event with its cursor (`$1`).
const INSERT_EVENT: &str = "INSERT INTO events \
     (seq, event_id, merchant_id, event_type, resource_id, occurred_ms, state) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// The highest cursor given: the next event's is one above.
const TOP_SEQ: &str = "SELECT COALESCE(MAX(seq), 0) FROM events";

/// Writes one event with its cursor `seq` (`write_events` gives it).
async fn insert_event<'c, E>(conn: E, seq: i64, event: &NewEvent) -> StoreResult<()>
where
    E: sqlx::Executor<'c, Database = Db>,
{
    let row = NewEventRow::from_event(event);
    sqlx::query(INSERT_EVENT)
        .bind(seq)
        .bind(row.event_id)
        .bind(row.merchant_id)
        .bind(row.event_type)
        .bind(row.resource_id)
        .bind(row.occurred_ms)
        .bind(row.state)
        .execute(conn)
        .await
        .map_err(classify)?;
    Ok(())
}

/// Writes a change's events with their cursors, and a pending delivery for
/// each whose merchant has a notification endpoint; the last writes of the
/// change's transaction. That transaction holds SQLite's one write lock
/// (it wrote its change first), so the next cursor is the top one plus
/// one, and transactions commit in cursor order: a merchant that read up
/// to a cursor never finds an earlier event appear later.
async fn write_events(
    conn: &mut sqlx::SqliteConnection,
    events: &[NewEvent],
    now_ms: i64,
) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let (top,): (i64,) = sqlx::query_as(TOP_SEQ).fetch_one(&mut *conn).await?;
    for (seq, event) in (top + 1..).zip(events) {
        insert_event(&mut *conn, seq, event).await?;
    }
    sqlx::query(INSERT_DELIVERIES)
        .bind(top + 1)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// This process's key (one process owns a SQLite database).
    instance: i64,
    /// Events this store wrote (committed) since it started.
    events_written: std::sync::atomic::AtomicU64,
}

impl SqliteStore {
    fn pools_in_use(&self) -> paybind_shared::metrics::PoolUse {
        paybind_shared::db::pool_use(&[&self.writer, &self.reader])
    }

    const BACKEND: Backend = Backend::Sqlite;
    /// One writer: claims never overlap.
    const CLAIM_LOCKING: &'static str = "";

    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let (writer, reader) = paybind_shared::db::sqlite_pools(url, max_connections).await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        Ok(Self {
            writer,
            reader,
            instance: rand::random::<i64>() | 1,
            events_written: Default::default(),
        })
    }

    /// One process owns a SQLite database: a charge of another owner was
    /// left by a process that is gone.
    async fn other_owner_alive(&self, _owner: i64) -> StoreResult<bool> {
        Ok(false)
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// A batch of reservations as one transaction (one commit) on the single
    /// writer connection: in-process statements, serialised by construction.
    async fn reserve_payments_impl(
        &self,
        requests: &[ReservePayment],
    ) -> StoreResult<Vec<ReserveOutcome>> {
        let mut tx = self.writer.begin().await?;
        let mut outcomes = Vec::with_capacity(requests.len());
        for r in requests {
            outcomes.push(Self::reserve_one(&mut tx, r, self.instance).await?);
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn reserve_one(
        tx: &mut sqlx::SqliteConnection,
        r: &ReservePayment,
        instance: i64,
    ) -> StoreResult<ReserveOutcome> {
        let existing: Option<PaymentRow> = sqlx::query_as(SELECT_PAYMENT_BY_KEY)
            .bind(&r.merchant_id)
            .bind(&r.idempotency_key)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(existing) = existing {
            return Ok(ReserveOutcome::Existing(existing.into_payment()?));
        }
        let binding: Option<BindingRow> =
            sqlx::query_as("SELECT * FROM bindings WHERE id = $1 AND merchant_id = $2")
                .bind(&r.binding_id)
                .bind(&r.merchant_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(b) = binding
            .map(BindingRow::into_binding)
            .transpose()?
            .filter(|b| b.merchant_user_id == r.merchant_user_id)
        else {
            return Ok(ReserveOutcome::NotFound);
        };
        let Some(card) = b.chargeable() else {
            return Ok(ReserveOutcome::Revoked);
        };
        if b.limits.currency() != r.amount.currency() {
            return Ok(ReserveOutcome::CurrencyMismatch);
        }
        let amount = r.amount.amount_minor();
        // Counted per card at this merchant, whichever binding pays.
        let usage: Option<(i64, i64)> = sqlx::query_as(
            "SELECT usage_day, usage_amount FROM card_usage \
             WHERE merchant_id = $1 AND card_fingerprint = $2",
        )
        .bind(&r.merchant_id)
        .bind(&b.card.fingerprint)
        .fetch_optional(&mut *tx)
        .await?;
        let used = match usage {
            Some((day, amount)) if day == r.day => amount,
            _ => 0,
        };
        let (per_payment, daily) = (
            b.limits.per_payment.amount_minor(),
            b.limits.daily.amount_minor(),
        );
        if amount > per_payment || used + amount > daily {
            return Ok(ReserveOutcome::LimitExceeded {
                per_payment_limit: per_payment,
                remaining_today: (daily - used).max(0),
            });
        }
        sqlx::query(
            "INSERT INTO payments (id, merchant_id, merchant_user_id, binding_id, order_id, \
             amount_minor, currency, description, status, counted_day, refunded_minor, \
             shopper_authenticated, idempotency_key, request_hash, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'PENDING', $9, 0, FALSE, $10, $11, $12, $12)",
        )
        .bind(&r.payment_id)
        .bind(&r.merchant_id)
        .bind(&r.merchant_user_id)
        .bind(&r.binding_id)
        .bind(&r.order_id)
        .bind(amount)
        .bind(r.amount.currency().code())
        .bind(&r.description)
        .bind(r.day)
        .bind(&r.idempotency_key)
        .bind(&r.request_hash)
        .bind(r.now_ms)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        sqlx::query(
            "INSERT INTO pending_charges (payment_id, owner, created_ms) VALUES ($1, $2, $3)",
        )
        .bind(&r.payment_id)
        .bind(instance)
        .bind(r.now_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO card_usage (merchant_id, card_fingerprint, usage_day, usage_amount) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (merchant_id, card_fingerprint) \
             DO UPDATE SET usage_day = excluded.usage_day, usage_amount = excluded.usage_amount",
        )
        .bind(&r.merchant_id)
        .bind(&b.card.fingerprint)
        .bind(r.day)
        .bind(used + amount)
        .execute(&mut *tx)
        .await?;
        Ok(ReserveOutcome::Reserved(card))
    }

    /// All outcomes in one transaction: one commit (one fsync) for the batch.
    async fn finalize_payments_impl(
        &self,
        outcomes: &[PaymentOutcome],
    ) -> StoreResult<Vec<PaymentRow>> {
        let mut tx = self.writer.begin().await?;
        let mut settled = Vec::with_capacity(outcomes.len());
        let mut events = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            let (status, decline_reason, acquirer_ref) = state_columns(&o.state);
            let payment: Option<PaymentRow> = sqlx::query_as(
                "UPDATE payments SET status = $2, decline_reason = $3, acquirer_ref = $4, \
                 updated_ms = $5 WHERE id = $1 AND status = 'PENDING' RETURNING *",
            )
            .bind(&o.payment_id)
            .bind(status)
            .bind(decline_reason)
            .bind(acquirer_ref)
            .bind(o.now_ms)
            .fetch_optional(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM pending_charges WHERE payment_id = $1")
                .bind(&o.payment_id)
                .execute(&mut *tx)
                .await?;
            let Some(p) = payment else { continue };
            if let (PaymentState::Declined { .. }, Some(binding_id), Some(day)) =
                (&o.state, &p.binding_id, p.counted_day)
            {
                // A decline gives its amount back to its card's day.
                sqlx::query(
                    "UPDATE card_usage SET usage_amount = MAX(usage_amount - $2, 0) \
                     WHERE (merchant_id, card_fingerprint) = \
                           (SELECT merchant_id, card_fingerprint FROM bindings WHERE id = $1) \
                       AND usage_day = $3",
                )
                .bind(binding_id)
                .bind(p.amount_minor)
                .bind(day)
                .execute(&mut *tx)
                .await?;
            }
            events.extend(NewEvent::payment_settled(&p.clone().into_payment()?));
            settled.push(p);
        }
        let now_ms = outcomes.iter().map(|o| o.now_ms).max().unwrap_or_default();
        self.commit_with_events(tx, &events, now_ms).await?;
        Ok(settled)
    }

    /// SQLite records attempts one at a time (`record_attempts_each`): its
    /// statements are calls into the library, not round trips.
    /// Claims go through the common transaction (`claim_deliveries`).
    async fn claim_at_once(
        &self,
        _now_ms: i64,
        _lease_until_ms: i64,
        _limit: i64,
    ) -> StoreResult<Option<Vec<ClaimedDelivery>>> {
        Ok(None)
    }

    async fn record_attempts_at_once(
        &self,
        _records: &[AttemptRecord],
    ) -> StoreResult<Option<Vec<bool>>> {
        Ok(None)
    }

    /// One writer: nothing else sequences meanwhile.
    async fn sequencer_lock(_tx: &mut sqlx::Transaction<'_, Db>) -> StoreResult<bool> {
        Ok(true)
    }
}
