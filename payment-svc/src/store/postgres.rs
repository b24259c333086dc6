//! PostgreSQL, the production backend. The hot path is the `reserve_payments`
//! function (migrations 0002, 0004, 0010, 0018): one round trip per batch.
use std::{str::FromStr, time::Duration};

use paybind_shared::db::retry_transient;
use sqlx::{postgres::PgConnectOptions, Connection, PgConnection, PgPool};

use crate::domain::model::binding_owner;

/// Tries of a batch that fails transiently (a deadlock victim, a dropped
/// connection) before it fails.
const TRIES: u32 = 5;

type Db = sqlx::Postgres;

super::common::impl_store!(PgStore);

/// The event-order lock: class 2 of the two-key advisory locks. Held from
/// a transaction's first cursor to its commit.
const EVENT_ORDER_LOCK: &str = "SELECT pg_advisory_xact_lock(2, 0)";

/// Writes a change's events with their cursors, and a pending delivery for
/// each whose merchant has a notification endpoint; the last writes of the
/// change's transaction.
///
/// Cursors are given under the event-order lock, held until the
/// transaction ends. PostgreSQL makes a transaction visible before it
/// releases its locks, so transactions that write events commit — and
/// become visible — in cursor order: a merchant that read up to a cursor
/// never finds an earlier event appear later. The lock is taken after
/// every row lock of the change (nothing is written after the events), so
/// it never waits in a cycle with them; it is held for two statements and
/// the commit.
async fn write_events(
    conn: &mut PgConnection,
    events: &[NewEvent],
    now_ms: i64,
) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    sqlx::query(EVENT_ORDER_LOCK).execute(&mut *conn).await?;
    let rows: Vec<NewEventRow> = events.iter().map(NewEventRow::from_event).collect();
    let col = |f: fn(&NewEventRow) -> &str| -> Vec<&str> { rows.iter().map(f).collect() };
    // A statement of its own after the lock: its snapshot sees every event
    // committed before, so the top cursor it reads is the last one given.
    sqlx::query(
        "WITH e AS ( \
             INSERT INTO events \
                 (seq, event_id, merchant_id, event_type, resource_id, occurred_ms, state) \
             SELECT top.seq + u.n, u.event_id, u.merchant_id, u.event_type, u.resource_id, \
                 u.occurred_ms, u.state \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
                         $6::text[]) WITH ORDINALITY \
                     AS u(event_id, merchant_id, event_type, resource_id, occurred_ms, state, n), \
                 (SELECT COALESCE(MAX(seq), 0) AS seq FROM events) top \
             RETURNING seq, merchant_id, resource_id) \
         INSERT INTO deliveries \
             (seq, merchant_id, resource_id, status, attempts, next_attempt_ms, created_ms) \
         SELECT e.seq, e.merchant_id, e.resource_id, 'PENDING', 0, $7, $7 \
         FROM e JOIN merchant_endpoints m ON m.merchant_id = e.merchant_id",
    )
    .bind(col(|r| &r.event_id))
    .bind(col(|r| &r.merchant_id))
    .bind(col(|r| r.event_type))
    .bind(col(|r| &r.resource_id))
    .bind(rows.iter().map(|r| r.occurred_ms).collect::<Vec<_>>())
    .bind(col(|r| &r.state))
    .bind(now_ms)
    .execute(&mut *conn)
    .await
    .map_err(classify)?;
    Ok(())
}

pub struct PgStore {
    pool: PgPool,
    /// Connections held to index paths and to one plan per statement
    /// (`PINNED_PLAN`), for the set-wise statements written in the
    /// background or once per batch: the delivery claim, the attempts
    /// record, the outcome batch.
    pinned: PgPool,
    /// This process's key: it holds an advisory lock on it while it lives,
    /// so any process can tell whether a charge's owner is gone.
    instance: i64,
    /// The connection that holds the lock, kept alive (and taken again if
    /// it breaks) until the store is dropped.
    keeper: tokio::task::JoinHandle<()>,
    /// Events this store wrote (committed) since it started.
    events_written: std::sync::atomic::AtomicU64,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// Takes the advisory lock of `instance` on a connection of its own.
async fn hold_instance_lock(
    options: &PgConnectOptions,
    instance: i64,
) -> StoreResult<PgConnection> {
    let mut conn = PgConnection::connect_with(options).await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(instance)
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

/// Keeps the lock held: checks the connection every two seconds and, if it
/// broke, connects and takes the lock again.
async fn keep_instance_lock(options: PgConnectOptions, instance: i64, mut conn: PgConnection) {
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if conn.ping().await.is_ok() {
            continue;
        }
        tracing::warn!("lost the connection holding this process's advisory lock; taking it again");
        loop {
            match hold_instance_lock(&options, instance).await {
                Ok(again) => {
                    conn = again;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not take this process's advisory lock yet");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

#[derive(sqlx::FromRow)]
struct Reserved {
    /// Which request (from 1) the row answers.
    ord: i64,
    o_outcome: String,
    o_per_payment_limit: i64,
    o_remaining_today: i64,
    o_pan_ct: Option<Vec<u8>>,
    o_pan_key_id: Option<String>,
    o_exp_month: i64,
    o_exp_year: i64,
    o_card_fingerprint: Option<String>,
}

/// A claimed delivery with its event's columns and its merchant's
/// endpoint (each absent if gone).
#[derive(sqlx::FromRow)]
struct ClaimRow {
    claimed_seq: i64,
    claimed_merchant_id: String,
    attempts: i64,
    url: Option<String>,
    server_name: Option<String>,
    write_no: Option<i64>,
    event_id: Option<String>,
    event_type: Option<String>,
    resource_id: Option<String>,
    occurred_ms: Option<i64>,
    state: Option<String>,
}

impl ClaimRow {
    /// The event, if it is still there.
    fn event(&self) -> Option<EventRow> {
        Some(EventRow {
            write_no: self.write_no?,
            seq: Some(self.claimed_seq),
            event_id: self.event_id.clone()?,
            merchant_id: self.claimed_merchant_id.clone(),
            event_type: self.event_type.clone()?,
            resource_id: self.resource_id.clone()?,
            occurred_ms: self.occurred_ms?,
            state: self.state.clone()?,
        })
    }
}

impl PgStore {
    fn pools_in_use(&self) -> paybind_shared::metrics::PoolUse {
        paybind_shared::db::pool_use(&[&self.pool, &self.pinned])
    }

    const BACKEND: Backend = Backend::Postgres;
    /// Replicas claim deliveries side by side: each skips what another
    /// has locked.
    const CLAIM_LOCKING: &'static str = " FOR UPDATE OF d SKIP LOCKED";
    /// The one good plan of each set-wise statement, whatever the
    /// statistics say: index reads and probes, stopping at the limit. A
    /// backlog grows fastest right after a burst or an endpoint's outage,
    /// before the table is analysed again; a planner that still thinks it
    /// small compares every candidate with every pending row (seen: 480 ms
    /// per claim at 1,500 pending, the deliverer falling further behind
    /// with each claim), or scans the payments it updates. Held so, a
    /// statement's plan does not depend on the statistics, and is made once
    /// per connection and kept (`force_generic_plan`): planned afresh for
    /// each call, as they were, these three statements spent more time
    /// being planned than running (pg_stat_statements with
    /// `track_planning`, BENCHMARKS.md). Set on the pool's own connections
    /// (`pinned`) when they open, so the claim is one statement with no
    /// transaction around it; JIT off too, which the disabled paths' costs
    /// would otherwise switch on.
    const PINNED_PLAN: [(&'static str, &'static str); 8] = [
        ("enable_seqscan", "off"),
        ("enable_bitmapscan", "off"),
        ("enable_hashjoin", "off"),
        ("enable_mergejoin", "off"),
        ("enable_material", "off"),
        ("enable_sort", "off"),
        ("jit", "off"),
        ("plan_cache_mode", "force_generic_plan"),
    ];
    /// Connections of the pinned pool: one replica's deliverer claims one
    /// round at a time, records two batches of attempts at once, and one
    /// outcome batch is written at a time.
    const PINNED_CONNECTIONS: u32 = 4;

    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let pool = paybind_shared::db::pg_pool(url, max_connections).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let instance = rand::random::<i64>() | 1;
        let options = PgConnectOptions::from_str(url)?;
        let pinned = paybind_shared::db::pool_options::<Db>()
            .max_connections(Self::PINNED_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options.clone().options(Self::PINNED_PLAN));
        let conn = hold_instance_lock(&options, instance).await?;
        let keeper = tokio::spawn(keep_instance_lock(options, instance, conn));
        Ok(Self {
            pool,
            pinned,
            instance,
            keeper,
            events_written: Default::default(),
        })
    }

    /// Whether another process holds `owner`'s lock: taking it succeeds only
    /// if its holder is gone (its connection closed when it died); it is
    /// given back at once.
    async fn other_owner_alive(&self, owner: i64) -> StoreResult<bool> {
        let (alive,): (bool,) = sqlx::query_as(
            "SELECT CASE WHEN pg_try_advisory_lock($1) THEN NOT pg_advisory_unlock($1) \
                         ELSE TRUE END",
        )
        .bind(owner)
        .fetch_one(&self.pool)
        .await?;
        Ok(alive)
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    /// A batch of reservations in one statement (one commit): the
    /// `reserve_payment` function once per request, in (merchant, card)
    /// order so that concurrent batches take the cards' usage locks in the
    /// same order (after the batch's idempotency keys, in hash order). If the
    /// batch still fails, each request is tried on its own.
    async fn reserve_payments_impl(
        &self,
        requests: &[ReservePayment],
    ) -> StoreResult<Vec<ReserveOutcome>> {
        if requests.len() > 1 {
            let batch = retry_transient("reserve payments", TRIES, || self.reserve_batch(requests));
            match batch.await {
                Ok(outcomes) => return Ok(outcomes),
                Err(e) => {
                    tracing::warn!(error = %e, "reservation batch failed; trying each on its own")
                }
            }
        }
        // Each on its own: one that fails again fails alone.
        let mut outcomes = Vec::with_capacity(requests.len());
        for r in requests {
            let one = retry_transient("reserve a payment", TRIES, || {
                self.reserve_batch(std::slice::from_ref(r))
            });
            let outcome = match one.await {
                Ok(mut one) => one
                    .pop()
                    .ok_or_else(|| StoreError::Corrupt("no outcome".into()))?,
                Err(e) => ReserveOutcome::Failed(e.to_string()),
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// One statement for the batch: `reserve_payments` takes the requests
    /// in (merchant, card) order, the lock order of the cards' usage rows.
    async fn reserve_batch(&self, requests: &[ReservePayment]) -> StoreResult<Vec<ReserveOutcome>> {
        let col = |f: &dyn Fn(&ReservePayment) -> &str| -> Vec<String> {
            requests.iter().map(|r| f(r).to_owned()).collect()
        };
        let num =
            |f: &dyn Fn(&ReservePayment) -> i64| -> Vec<i64> { requests.iter().map(f).collect() };
        let rows: Vec<Reserved> = sqlx::query_as(
            "SELECT * FROM reserve_payments($1::text[], $2::text[], $3::text[], $4::text[], \
                 $5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[], \
                 $11::bigint[], $12::bigint[], $13)",
        )
        .bind(col(&|r| r.payment_id.as_str()))
        .bind(col(&|r| r.merchant_id.as_str()))
        .bind(col(&|r| r.binding_id.as_str()))
        .bind(col(&|r| r.merchant_user_id.as_str()))
        .bind(col(&|r| r.order_id.as_str()))
        .bind(num(&|r| r.amount.amount_minor()))
        .bind(col(&|r| r.amount.currency().code()))
        .bind(col(&|r| &r.description))
        .bind(col(&|r| r.idempotency_key.as_str()))
        .bind(col(&|r| &r.request_hash))
        .bind(num(&|r| r.day))
        .bind(num(&|r| r.now_ms))
        .bind(self.instance)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        if rows.len() != requests.len() {
            return Err(StoreError::Corrupt(format!(
                "{} outcomes for {} requests",
                rows.len(),
                requests.len()
            )));
        }
        let mut outcomes: Vec<Option<ReserveOutcome>> = (0..requests.len()).map(|_| None).collect();
        for row in rows {
            let index = usize::try_from(row.ord - 1)
                .ok()
                .filter(|i| *i < requests.len())
                .ok_or_else(|| StoreError::Corrupt(format!("outcome for request {}", row.ord)))?;
            outcomes[index] = Some(self.outcome(&requests[index], row).await?);
        }
        outcomes
            .into_iter()
            .map(|o| o.ok_or_else(|| StoreError::Corrupt("missing outcome".into())))
            .collect()
    }

    async fn outcome(&self, r: &ReservePayment, row: Reserved) -> StoreResult<ReserveOutcome> {
        Ok(match row.o_outcome.as_str() {
            "RESERVED" => ReserveOutcome::Reserved(chargeable_card(
                row.o_pan_ct
                    .ok_or_else(|| StoreError::Corrupt("no card".into()))?,
                row.o_pan_key_id
                    .ok_or_else(|| StoreError::Corrupt("no card key".into()))?,
                row.o_exp_month,
                row.o_exp_year,
                binding_owner(
                    &r.merchant_id,
                    &r.merchant_user_id,
                    row.o_card_fingerprint
                        .as_deref()
                        .ok_or_else(|| StoreError::Corrupt("no card fingerprint".into()))?,
                ),
            )?),
            "EXISTING" => {
                let existing: PaymentRow = sqlx::query_as(SELECT_PAYMENT_BY_KEY)
                    .bind(&r.merchant_id)
                    .bind(&r.idempotency_key)
                    .fetch_one(&self.pool)
                    .await?;
                ReserveOutcome::Existing(existing.into_payment()?)
            }
            "NOT_FOUND" => ReserveOutcome::NotFound,
            "REVOKED" => ReserveOutcome::Revoked,
            "CURRENCY_MISMATCH" => ReserveOutcome::CurrencyMismatch,
            "LIMIT_EXCEEDED" => ReserveOutcome::LimitExceeded {
                per_payment_limit: row.o_per_payment_limit,
                remaining_today: row.o_remaining_today,
            },
            other => return Err(StoreError::Corrupt(format!("unknown outcome {other}"))),
        })
    }

    /// Claims due deliveries in one statement (its own transaction) on the
    /// pinned connections: the claim, the abandoned mark of each one
    /// claimed again, and the claimed deliveries' events and endpoints,
    /// read in the same statement. A delivery whose event is gone or cannot
    /// be read fails afterwards (`fail_unpushable`); if that fails, or this
    /// replica stops before it, its lease runs out and the next claim fails
    /// it.
    async fn claim_at_once(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> StoreResult<Option<Vec<ClaimedDelivery>>> {
        let rows: Vec<ClaimRow> = sqlx::query_as(&format!(
            "WITH c AS ({claim}), \
             abandoned AS ( \
                 INSERT INTO delivery_attempts \
                     (seq, attempt, started_ms, latency_ms, outcome, detail) \
                 SELECT seq, attempts - 1, $1, 0, 'ABANDONED', \
                     'the replica making this attempt stopped before the answer' \
                 FROM c WHERE attempts > 1 \
                 ON CONFLICT (seq, attempt) DO NOTHING) \
             SELECT c.seq AS claimed_seq, c.merchant_id AS claimed_merchant_id, c.attempts, \
                 m.url, m.server_name, e.write_no, e.event_id, e.event_type, e.resource_id, \
                 e.occurred_ms, e.state \
             FROM c LEFT JOIN events e ON e.seq = c.seq \
                 LEFT JOIN merchant_endpoints m ON m.merchant_id = c.merchant_id \
             ORDER BY c.seq",
            claim = claim_deliveries_sql(Self::CLAIM_LOCKING)
        ))
        .bind(now_ms)
        .bind(lease_until_ms)
        .bind(limit)
        .fetch_all(&self.pinned)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let seq = row.claimed_seq;
            let event = match row.event().map(EventRow::into_event) {
                Some(Ok(event)) => event,
                gone_or_unreadable => {
                    // The claim is committed: one that cannot be failed now
                    // must not drop the others (its lease runs out and the
                    // next claim fails it).
                    let error = gone_or_unreadable.and_then(Result::err);
                    let failed = match self.pool.acquire().await {
                        Ok(mut conn) => fail_unpushable(&mut conn, seq, error, now_ms).await,
                        Err(e) => Err(e.into()),
                    };
                    if let Err(e) = failed {
                        tracing::warn!(error = %e, seq, "could not fail an unpushable delivery");
                    }
                    continue;
                }
            };
            out.push(ClaimedDelivery {
                event,
                endpoint: row
                    .url
                    .zip(row.server_name)
                    .map(|(url, server_name)| NotifyEndpoint { url, server_name }),
                merchant_id: MerchantId::from_stored(row.claimed_merchant_id),
                attempt: u32::try_from(row.attempts).unwrap_or(u32::MAX),
            });
        }
        Ok(Some(out))
    }

    /// A batch of attempts in one statement (its own transaction): each
    /// kept, and each delivery moved on (delivered; due again; given up) if
    /// it still waits for that attempt. `None` when a delivery appears twice
    /// in the batch (one statement may change a row once): those go one at
    /// a time.
    async fn record_attempts_at_once(
        &self,
        records: &[AttemptRecord],
    ) -> StoreResult<Option<Vec<bool>>> {
        let mut seen = std::collections::HashSet::with_capacity(records.len());
        if !records.iter().all(|r| seen.insert(r.seq)) {
            return Ok(None);
        }
        let num = |f: fn(&AttemptRecord) -> i64| -> Vec<i64> { records.iter().map(f).collect() };
        let (next, at_ms): (Vec<&str>, Vec<i64>) = records
            .iter()
            .map(|r| match r.next {
                AfterAttempt::Delivered => ("DELIVERED", r.now_ms),
                AfterAttempt::RetryAt(at_ms) => ("RETRY", at_ms),
                AfterAttempt::GiveUp => ("FAILED", r.now_ms),
            })
            .unzip();
        let moved: Vec<(i64,)> = sqlx::query_as(
            "WITH r AS ( \
                 SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], \
                                      $5::text[], $6::text[], $7::text[], $8::bigint[]) \
                     AS r(seq, attempt, started_ms, latency_ms, outcome, detail, next, at_ms)), \
             kept AS ( \
                 INSERT INTO delivery_attempts \
                     (seq, attempt, started_ms, latency_ms, outcome, detail) \
                 SELECT seq, attempt, started_ms, latency_ms, outcome, detail FROM r \
                 ON CONFLICT (seq, attempt) DO UPDATE SET started_ms = excluded.started_ms, \
                     latency_ms = excluded.latency_ms, outcome = excluded.outcome, \
                     detail = excluded.detail) \
             UPDATE deliveries d SET \
                 status = CASE r.next WHEN 'RETRY' THEN d.status ELSE r.next END, \
                 finished_ms = CASE r.next WHEN 'RETRY' THEN d.finished_ms ELSE r.at_ms END, \
                 next_attempt_ms = CASE r.next WHEN 'RETRY' THEN r.at_ms \
                                   ELSE d.next_attempt_ms END \
             FROM r WHERE d.seq = r.seq AND d.status = 'PENDING' \
                 AND (r.next = 'DELIVERED' OR d.attempts = r.attempt) \
             RETURNING d.seq",
        )
        .bind(num(|r| r.seq))
        .bind(num(|r| i64::from(r.attempt.attempt)))
        .bind(num(|r| r.attempt.started_ms))
        .bind(num(|r| r.attempt.latency_ms))
        .bind(
            records
                .iter()
                .map(|r| attempt_outcome::to_stored(r.attempt.outcome))
                .collect::<Vec<_>>(),
        )
        .bind(
            records
                .iter()
                .map(|r| r.attempt.detail.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(next)
        .bind(at_ms)
        .fetch_all(&self.pinned)
        .await?;
        let moved: std::collections::HashSet<i64> = moved.into_iter().map(|(seq,)| seq).collect();
        Ok(Some(
            records.iter().map(|r| moved.contains(&r.seq)).collect(),
        ))
    }

    /// One sequencer at a time across replicas, and none while a writer
    /// gives cursors (the event-order lock); a replica that finds it taken
    /// leaves the round to later.
    async fn sequencer_lock(tx: &mut sqlx::Transaction<'_, Db>) -> StoreResult<bool> {
        let (mine,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock(2, 0)")
            .fetch_one(&mut **tx)
            .await?;
        Ok(mine)
    }

    /// Records outcomes, trying again after a transient failure.
    async fn finalize_payments_impl(
        &self,
        outcomes: &[PaymentOutcome],
    ) -> StoreResult<Vec<PaymentRow>> {
        retry_transient("record payment outcomes", TRIES, || {
            self.finalize_once(outcomes)
        })
        .await
    }

    /// Deadlock-free by lock order: every writer that locks several cards'
    /// usage rows takes them in (merchant, card) order (`reserve_payments`
    /// sorts its requests so), and a batch with declines locks the rows it
    /// gives usage back to, in that order, before it changes anything; the
    /// events' order lock comes last (`write_events`). On the pinned
    /// connections: each statement of the batch planned once, on indexes.
    async fn finalize_once(&self, outcomes: &[PaymentOutcome]) -> StoreResult<Vec<PaymentRow>> {
        let declined: Vec<&str> = outcomes
            .iter()
            .filter(|o| matches!(o.state, PaymentState::Declined { .. }))
            .map(|o| o.payment_id.as_str())
            .collect();
        let mut tx = self.pinned.begin().await?;
        if !declined.is_empty() {
            // The few declined cards sorted for their lock order: with
            // sorting priced out (the pinned settings, for the claim) the
            // planner would rather read all of `card_usage` in key order.
            sqlx::query("SET LOCAL enable_sort = on")
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "SELECT 1 FROM card_usage cu WHERE (cu.merchant_id, cu.card_fingerprint) IN \
                     (SELECT b.merchant_id, b.card_fingerprint FROM payments p \
                      JOIN bindings b ON b.id = p.binding_id WHERE p.id = ANY($1::text[])) \
                 ORDER BY cu.merchant_id, cu.card_fingerprint FOR UPDATE OF cu",
            )
            .bind(&declined)
            .fetch_all(&mut *tx)
            .await?;
        }
        let rows = self
            .finalize_statement(outcomes)
            .fetch_all(&mut *tx)
            .await?;
        // Each settled payment's event, from the row as updated.
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            events.extend(NewEvent::payment_settled(&row.clone().into_payment()?));
        }
        let now_ms = outcomes.iter().map(|o| o.now_ms).max().unwrap_or_default();
        self.commit_with_events(tx, &events, now_ms).await?;
        Ok(rows)
    }

    /// All outcomes in one statement: the payments updated, and declined
    /// amounts given back to the day they were counted on.
    fn finalize_statement<'q>(
        &self,
        outcomes: &'q [PaymentOutcome],
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, PaymentRow, sqlx::postgres::PgArguments> {
        let ids: Vec<&str> = outcomes.iter().map(|o| o.payment_id.as_str()).collect();
        let columns: Vec<_> = outcomes.iter().map(|o| state_columns(&o.state)).collect();
        let statuses: Vec<&str> = columns.iter().map(|c| c.0).collect();
        let reasons: Vec<Option<&str>> = columns.iter().map(|c| c.1).collect();
        let refs: Vec<Option<String>> = columns.iter().map(|c| c.2.clone()).collect();
        let times: Vec<i64> = outcomes.iter().map(|o| o.now_ms).collect();
        sqlx::query_as(
            "WITH v AS ( \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) \
                     AS v(id, status, reason, ref, now_ms)), \
             p AS ( \
                 UPDATE payments SET status = v.status, decline_reason = v.reason, \
                     acquirer_ref = v.ref, updated_ms = v.now_ms \
                 FROM v WHERE payments.id = ANY($1::text[]) AND payments.id = v.id \
                     AND payments.status = 'PENDING' \
                 RETURNING payments.*), \
             settled AS ( \
                 DELETE FROM pending_charges WHERE payment_id = ANY($1::text[]) RETURNING 1), \
             released AS ( \
                 UPDATE card_usage cu SET usage_amount = GREATEST(cu.usage_amount - d.total, 0) \
                 FROM (SELECT b.merchant_id, b.card_fingerprint, p.counted_day, \
                              SUM(p.amount_minor) AS total \
                       FROM p JOIN bindings b ON b.id = p.binding_id \
                       WHERE p.status = 'DECLINED' AND p.counted_day IS NOT NULL \
                       GROUP BY b.merchant_id, b.card_fingerprint, p.counted_day) d \
                 WHERE cu.merchant_id = d.merchant_id AND cu.card_fingerprint = d.card_fingerprint \
                   AND cu.usage_day = d.counted_day \
                 RETURNING 1) \
             SELECT * FROM p",
        )
        .bind(ids)
        .bind(statuses)
        .bind(reasons)
        .bind(refs)
        .bind(times)
    }
}
