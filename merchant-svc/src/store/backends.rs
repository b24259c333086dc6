//! The two backends. Every statement is the same SQL on both (sqlx binds
//! `$N` on SQLite too), so one macro writes the `Store` impl for each; the
//! backends differ in their pools and migrations, and in two statements:
//! applied events are recorded in one statement on PostgreSQL
//! (`RECORD_EVENTS_AT_ONCE`), where each statement is a round trip.
use std::sync::LazyLock;

use paybind_shared::db::{self, insert_sql, Backend, KeptConnections};
use sqlx::{PgPool, SqlitePool};

use super::{rows::*, *};

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Checkout's writes and reads: never kept here (the one writer
    /// connection would be no one else's; a reader costs no round trip).
    hot_writes: Arc<KeptConnections<sqlx::Sqlite>>,
    hot_reads: Arc<KeptConnections<sqlx::Sqlite>>,
    /// Seals the binding tokens at rest.
    vault: Arc<Vault>,
}

impl SqliteStore {
    fn pools_in_use(&self) -> paybind_shared::metrics::PoolUse {
        paybind_shared::db::pool_use(&[&self.writer, &self.reader])
    }

    pub async fn connect(url: &str, max_connections: u32, vault: Arc<Vault>) -> StoreResult<Self> {
        let (writer, reader) = db::sqlite_pools(url, max_connections).await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let store = Self {
            hot_writes: Arc::new(KeptConnections::new(writer.clone(), 0)),
            hot_reads: Arc::new(KeptConnections::new(reader.clone(), 0)),
            writer,
            reader,
            vault,
        };
        store.seal_plain_tokens().await?;
        Ok(store)
    }
}

pub struct PgStore {
    writer: PgPool,
    reader: PgPool,
    /// Connections kept by checkout's statements (the user read, the
    /// order's two writes): each skips sqlx's ping on giving it back. One
    /// set, shared by the reads and the writes.
    hot_writes: Arc<KeptConnections<sqlx::Postgres>>,
    hot_reads: Arc<KeptConnections<sqlx::Postgres>>,
    vault: Arc<Vault>,
}

impl PgStore {
    /// The writer and the reader are one pool here.
    fn pools_in_use(&self) -> paybind_shared::metrics::PoolUse {
        paybind_shared::db::pool_use(&[&self.writer])
    }

    pub async fn connect(url: &str, max_connections: u32, vault: Arc<Vault>) -> StoreResult<Self> {
        let pool = db::pg_pool(url, max_connections).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let hot = Arc::new(KeptConnections::new(
            pool.clone(),
            kept_for_checkouts(max_connections),
        ));
        let store = Self {
            hot_writes: hot.clone(),
            hot_reads: hot,
            writer: pool.clone(),
            reader: pool,
            vault,
        };
        store.seal_plain_tokens().await?;
        Ok(store)
    }
}

/// Connections checkout keeps out of a PostgreSQL pool of `max`: as many
/// as order batches are written at once, and at most a quarter of the pool
/// (the rest serve everything else).
fn kept_for_checkouts(max: u32) -> usize {
    Backend::Postgres
        .batches_in_flight()
        .min(usize::try_from(max / 4).unwrap_or(usize::MAX))
}

/// Tries of a batch that fails transiently before it fails.
const TRIES: u32 = 5;

static INSERT_ORDER: LazyLock<String> = LazyLock::new(|| {
    insert_sql(
        "orders",
        OrderRow::COLUMNS,
        "ON CONFLICT (idempotency_key) DO NOTHING RETURNING *",
    )
});

/// A user's columns, named: a `SELECT *` prepared by a connection that
/// read the schema before a migration added columns would not see them.
static SELECT_USER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM users WHERE id = $1",
        UserRow::COLUMNS.join(", ")
    )
});

static INSERT_USER: LazyLock<String> =
    LazyLock::new(|| insert_sql("users", UserRow::COLUMNS, "RETURNING id"));

/// A user's columns and the password hash, bound last.
static INSERT_USER_WITH_PASSWORD: LazyLock<String> = LazyLock::new(|| {
    let mut columns = UserRow::COLUMNS.to_vec();
    columns.push("password_hash");
    insert_sql("users", &columns, "RETURNING id")
});

/// An order's move: the statuses it may move from are bound, one
/// placeholder each.
fn update_order_sql(from: usize) -> String {
    let placeholders: Vec<String> = (0..from).map(|i| format!("${}", 8 + i)).collect();
    format!(
        "UPDATE orders SET status = $2, decline_reason = $3, \
         payment_id = COALESCE($4, payment_id), session_id = COALESCE($5, session_id), \
         page_url = COALESCE($6, page_url), paid_with_card_on_file = $7, updated_ms = ${} \
         WHERE id = $1 AND status IN ({}) RETURNING *",
        8 + from,
        placeholders.join(", ")
    )
}

/// `record_events` in one PostgreSQL statement: the events recorded (each
/// once), their resources' versions raised, and the cursor moved to `$8`
/// at `$9` unless `$8` is NULL (pushed events). A batch never holds two
/// events of one resource, but the versions are grouped anyway: one
/// statement may change a row once.
const RECORD_EVENTS_AT_ONCE: &str = "WITH new AS ( \
         INSERT INTO applied_events (event_id, event_type, resource_id, \
             resource_version, cursor, outcome, applied_ms) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], \
             $5::text[], $6::text[], $7::bigint[]) \
         ON CONFLICT (event_id) DO NOTHING \
         RETURNING resource_id, resource_version), \
     raised AS ( \
         INSERT INTO resource_versions (resource_id, version) \
         SELECT resource_id, MAX(resource_version) FROM new GROUP BY resource_id \
         ON CONFLICT (resource_id) DO UPDATE SET version = \
             GREATEST(excluded.version, resource_versions.version) \
         RETURNING 1), \
     moved AS ( \
         INSERT INTO feed_position (id, cursor, updated_ms) \
         SELECT 1, $8::text, $9 WHERE $8::text IS NOT NULL \
         ON CONFLICT (id) DO UPDATE SET cursor = excluded.cursor, \
             updated_ms = excluded.updated_ms \
         RETURNING 1) \
     SELECT 1";

macro_rules! impl_store {
    ($store:ty, $backend:expr, $conn:ty) => {
        type Db = <$conn as sqlx::Connection>::Database;

        /// An applied event's seven columns, bound as `$1`-`$7`.
        fn bind_applied<'q>(
            q: sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>>,
            e: &'q AppliedEvent,
        ) -> sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>> {
            q.bind(&e.event_id)
                .bind(&e.event_type)
                .bind(&e.resource_id)
                .bind(e.resource_version)
                .bind(&e.cursor)
                .bind(event_outcome::to_stored(e.outcome))
                .bind(e.applied_ms)
        }

        /// `record_event`'s statements, one after another in the caller's
        /// transaction (SQLite).
        async fn record_event_on(
            conn: &mut $conn,
            e: &AppliedEvent,
            moves_cursor: bool,
        ) -> StoreResult<()> {
            let new = bind_applied(
                sqlx::query(
                    "INSERT INTO applied_events (event_id, event_type, resource_id, \
                     resource_version, cursor, outcome, applied_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
                ),
                e,
            )
            .execute(&mut *conn)
            .await?
            .rows_affected()
                == 1;
            if new {
                sqlx::query(
                    "INSERT INTO resource_versions (resource_id, version) VALUES ($1, $2) \
                     ON CONFLICT (resource_id) DO UPDATE SET version = \
                     CASE WHEN excluded.version > resource_versions.version \
                     THEN excluded.version ELSE resource_versions.version END",
                )
                .bind(&e.resource_id)
                .bind(e.resource_version)
                .execute(&mut *conn)
                .await?;
            }
            if moves_cursor {
                move_feed_position_on(conn, &e.cursor, e.applied_ms).await?;
            }
            Ok(())
        }

        async fn move_feed_position_on(
            conn: &mut $conn,
            cursor: &str,
            now_ms: i64,
        ) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO feed_position (id, cursor, updated_ms) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO UPDATE SET cursor = excluded.cursor, \
                 updated_ms = excluded.updated_ms",
            )
            .bind(cursor)
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        async fn insert_order_on(conn: &mut $conn, o: &Order) -> StoreResult<(Order, bool)> {
            let row = OrderRow::from_order(o);
            let inserted: Option<OrderRow> = row
                .bind_all(sqlx::query_as(&INSERT_ORDER))
                .fetch_optional(&mut *conn)
                .await
                .map_err(db::classify)?;
            if let Some(row) = inserted {
                return Ok((row.into_order()?, true));
            }
            let existing: OrderRow = sqlx::query_as("SELECT * FROM orders WHERE idempotency_key = $1")
                .bind(&o.idempotency_key)
                .fetch_one(&mut *conn)
                .await?;
            Ok((existing.into_order()?, false))
        }

        async fn update_order_on(conn: &mut $conn, t: &OrderTransition) -> StoreResult<Option<Order>> {
            let sql = update_order_sql(t.from.len());
            let u = &t.update;
            let mut query = sqlx::query_as::<_, OrderRow>(&sql)
                .bind(&t.order_id)
                .bind(order_status::to_stored(u.status))
                .bind(&u.decline_reason)
                .bind(u.payment_id.as_ref())
                .bind(u.page.as_ref().map(|p| &p.session_id))
                .bind(u.page.as_ref().map(|p| p.page_url.as_str()))
                .bind(u.paid_with_card_on_file);
            for status in &t.from {
                query = query.bind(order_status::to_stored(*status));
            }
            query
                .bind(t.now_ms)
                .fetch_optional(&mut *conn)
                .await?
                .map(OrderRow::into_order)
                .transpose()
        }

        impl $store {
            /// Tokens stored in plain text by an older version are sealed
            /// in place, once, at start.
            pub(super) async fn seal_plain_tokens(&self) -> StoreResult<()> {
                let plain: Vec<(String, String)> = sqlx::query_as(
                    "SELECT id, binding_token FROM users WHERE binding_token LIKE 'pbt\\_%' ESCAPE '\\'",
                )
                .fetch_all(&self.writer)
                .await?;
                for (id, token) in plain.into_iter().filter(|(_, t)| is_plain_token(t)) {
                    let user_id = MerchantUserId::from_stored(id);
                    let sealed = seal_token(&self.vault, &user_id, &paybind_shared::ids::BindingToken::from_trusted(token.clone()))?;
                    sqlx::query("UPDATE users SET binding_token = $1 WHERE id = $2 AND binding_token = $3")
                        .bind(sealed)
                        .bind(&user_id)
                        .bind(token)
                        .execute(&self.writer)
                        .await?;
                }
                Ok(())
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> Backend {
                $backend
            }

            fn pool_use(&self) -> paybind_shared::metrics::PoolUse {
                self.pools_in_use()
            }

            async fn insert_user(&self, u: &User) -> StoreResult<()> {
                let row = UserRow::from_user(u, &self.vault)?;
                row.bind_all(sqlx::query_as::<_, (String,)>(&INSERT_USER))
                    .fetch_one(&self.writer)
                    .await
                    .map_err(db::classify)?;
                Ok(())
            }

            async fn insert_user_with_password(&self, u: &User, hash: &PasswordHash) -> StoreResult<()> {
                let row = UserRow::from_user(u, &self.vault)?;
                row.bind_all(sqlx::query_as::<_, (String,)>(&INSERT_USER_WITH_PASSWORD))
                    .bind(hash.as_str())
                    .fetch_one(&self.writer)
                    .await
                    .map_err(db::classify)?;
                Ok(())
            }

            async fn password_hash(&self, id: &MerchantUserId) -> StoreResult<Option<PasswordHash>> {
                let row: Option<(Option<String>,)> =
                    sqlx::query_as("SELECT password_hash FROM users WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.reader)
                        .await?;
                Ok(row.and_then(|(hash,)| hash).map(PasswordHash::from_stored))
            }

            async fn set_password_hash(&self, id: &MerchantUserId, hash: &PasswordHash) -> StoreResult<bool> {
                let done = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                    .bind(id)
                    .bind(hash.as_str())
                    .execute(&self.writer)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_page_presentation(&self, id: &MerchantUserId, p: Presentation) -> StoreResult<bool> {
                let done = sqlx::query("UPDATE users SET page_presentation = $2 WHERE id = $1")
                    .bind(id)
                    .bind(presentation::to_stored(p))
                    .execute(&self.writer)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn get_user(&self, id: &MerchantUserId) -> StoreResult<Option<User>> {
                let mut conn = self.hot_reads.take().await?;
                let row = sqlx::query_as::<_, UserRow>(&SELECT_USER)
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
                conn.keep();
                row.map(|row| row.into_user(&self.vault)).transpose()
            }

            async fn set_card(&self, user_id: &MerchantUserId, card: Option<&CardOnFile>) -> StoreResult<()> {
                // A binding whose newest news is its revocation never goes
                // (back) on file: a session's answer read before the
                // revocation may be written after it.
                sqlx::query(
                    "UPDATE users SET binding_id = $2, binding_token = $3, card_brand = $4, \
                     card_last4 = $5, exp_month = $6, exp_year = $7, bound_ms = $8 WHERE id = $1 \
                     AND NOT EXISTS (SELECT 1 FROM applied_events a \
                       JOIN resource_versions v ON v.resource_id = a.resource_id \
                       AND v.version = a.resource_version \
                       WHERE a.resource_id = $2 AND a.event_type = 'EVENT_TYPE_BINDING_REVOKED')",
                )
                .bind(user_id)
                .bind(card.map(|c| &c.binding_id))
                .bind(card.map(|c| seal_token(&self.vault, user_id, &c.token)).transpose()?)
                .bind(card.map(|c| card_brand::to_stored(c.brand)))
                .bind(card.map(|c| c.last4.as_str()))
                .bind(card.map(|c| i64::from(c.expiry.month)))
                .bind(card.map(|c| i64::from(c.expiry.year)))
                .bind(card.map(|c| c.bound_ms))
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn clear_card_if(&self, user_id: &MerchantUserId, binding_id: &BindingId) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE users SET binding_id = NULL, binding_token = NULL, card_brand = NULL, \
                     card_last4 = NULL, exp_month = NULL, exp_year = NULL, bound_ms = NULL \
                     WHERE id = $1 AND binding_id = $2",
                )
                .bind(user_id)
                .bind(binding_id)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn insert_orders(&self, orders: &[Order]) -> StoreResult<Vec<(Order, bool)>> {
                // Safe to try again: an order already there is returned as such.
                db::retry_transient("insert orders", TRIES, || async {
                    let mut conn = self.hot_writes.take().await?;
                    if let [o] = orders {
                        // One statement commits by itself: no BEGIN/COMMIT
                        // round trips around it.
                        let placed = insert_order_on(&mut conn, o).await?;
                        conn.keep();
                        return Ok(vec![placed]);
                    }
                    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                    let mut out = Vec::with_capacity(orders.len());
                    for o in orders {
                        out.push(insert_order_on(&mut tx, o).await?);
                    }
                    tx.commit().await?;
                    conn.keep();
                    Ok(out)
                })
                .await
            }

            async fn get_order(&self, id: &OrderId) -> StoreResult<Option<Order>> {
                sqlx::query_as::<_, OrderRow>("SELECT * FROM orders WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.reader)
                    .await?
                    .map(OrderRow::into_order)
                    .transpose()
            }

            async fn order_by_session(&self, session_id: &SessionId) -> StoreResult<Option<Order>> {
                sqlx::query_as::<_, OrderRow>("SELECT * FROM orders WHERE session_id = $1")
                    .bind(session_id)
                    .fetch_optional(&self.reader)
                    .await?
                    .map(OrderRow::into_order)
                    .transpose()
            }

            async fn update_order(&self, transition: &OrderTransition) -> StoreResult<Option<Order>> {
                let mut conn = self.writer.acquire().await?;
                update_order_on(&mut conn, transition).await
            }

            async fn update_orders(&self, transitions: &[OrderTransition]) -> StoreResult<Vec<Option<Order>>> {
                // Safe to try again: a move already made finds the order moved
                // (`None`), and the caller reads it.
                db::retry_transient("update orders", TRIES, || async {
                    let mut conn = self.hot_writes.take().await?;
                    if let [t] = transitions {
                        let moved = update_order_on(&mut conn, t).await?;
                        conn.keep();
                        return Ok(vec![moved]);
                    }
                    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                    let mut out = Vec::with_capacity(transitions.len());
                    for t in transitions {
                        out.push(update_order_on(&mut tx, t).await?);
                    }
                    tx.commit().await?;
                    conn.keep();
                    Ok(out)
                })
                .await
            }

            async fn set_refunded(&self, id: &OrderId, refunded: i64, now_ms: i64) -> StoreResult<Option<Order>> {
                sqlx::query_as::<_, OrderRow>(
                    "UPDATE orders SET refunded_minor = $2, updated_ms = $3 WHERE id = $1 RETURNING *",
                )
                .bind(id)
                .bind(refunded)
                .bind(now_ms)
                .fetch_optional(&self.writer)
                .await?
                .map(OrderRow::into_order)
                .transpose()
            }

            async fn list_orders(&self, user_id: &MerchantUserId, after: Option<PageCursor>, limit: i64) -> StoreResult<Vec<Order>> {
                let (after_ms, after_id) = match after {
                    Some(c) => (Some(c.created_ms), Some(c.id)),
                    None => (None, None),
                };
                orders(sqlx::query_as::<_, OrderRow>(
                    "SELECT * FROM orders WHERE user_id = $1 \
                     AND ($2 IS NULL OR created_ms < $2 OR (created_ms = $2 AND id < $3)) \
                     ORDER BY created_ms DESC, id DESC LIMIT $4",
                )
                .bind(user_id)
                .bind(after_ms)
                .bind(after_id)
                .bind(limit)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn stale_pending_orders(&self, before_ms: i64, limit: i64) -> StoreResult<Vec<Order>> {
                orders(sqlx::query_as::<_, OrderRow>(
                    "SELECT * FROM orders WHERE status = $1 AND updated_ms < $2 \
                     ORDER BY updated_ms LIMIT $3",
                )
                .bind(order_status::to_stored(OrderStatus::PendingPayment))
                .bind(before_ms)
                .bind(limit)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn insert_session(&self, id: &SessionId, user_id: &MerchantUserId, order_id: Option<&OrderId>, now_ms: i64) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO bind_sessions (id, user_id, order_id, created_ms) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(user_id)
                .bind(order_id)
                .bind(now_ms)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn session_user(&self, id: &SessionId) -> StoreResult<Option<MerchantUserId>> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT user_id FROM bind_sessions WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.reader)
                        .await?;
                Ok(row.map(|(u,)| MerchantUserId::from_stored(u)))
            }

            async fn sessions_due(&self, now_ms: i64, created_after_ms: i64, limit: i64) -> StoreResult<Vec<OpenSession>> {
                let rows: Vec<OpenSessionRow> = sqlx::query_as(
                    "SELECT id, user_id, created_ms FROM bind_sessions \
                     WHERE outcome IS NULL AND next_check_ms <= $1 AND created_ms > $2 \
                     ORDER BY next_check_ms LIMIT $3",
                )
                .bind(now_ms)
                .bind(created_after_ms)
                .bind(limit)
                .fetch_all(&self.reader)
                .await?;
                Ok(rows.into_iter().map(OpenSessionRow::into_session).collect())
            }

            async fn set_session_next_check(&self, id: &SessionId, next_check_ms: i64) -> StoreResult<()> {
                sqlx::query("UPDATE bind_sessions SET next_check_ms = $2 WHERE id = $1 AND outcome IS NULL")
                    .bind(id)
                    .bind(next_check_ms)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn set_session_outcome(&self, id: &SessionId, end: SessionEnd) -> StoreResult<()> {
                sqlx::query("UPDATE bind_sessions SET outcome = $2 WHERE id = $1")
                    .bind(id)
                    .bind(session_end::to_stored(end))
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn feed_position(&self) -> StoreResult<FeedPosition> {
                let row: Option<(String, i64)> =
                    sqlx::query_as("SELECT cursor, updated_ms FROM feed_position WHERE id = 1")
                        .fetch_optional(&self.writer)
                        .await?;
                Ok(row
                    .map(|(cursor, updated_ms)| FeedPosition { cursor, updated_ms })
                    .unwrap_or_default())
            }

            async fn event_seen(
                &self,
                event_id: &str,
                resource_id: &str,
            ) -> StoreResult<(Option<EventOutcome>, Option<i64>)> {
                let (outcome, version): (Option<String>, Option<i64>) = sqlx::query_as(
                    "SELECT (SELECT outcome FROM applied_events WHERE event_id = $1), \
                     (SELECT version FROM resource_versions WHERE resource_id = $2)",
                )
                .bind(event_id)
                .bind(resource_id)
                .fetch_one(&self.reader)
                .await?;
                Ok((
                    outcome.map(|o| event_outcome::from_stored(&o)).transpose()?,
                    version,
                ))
            }

            async fn move_feed_position(&self, cursor: &str, now_ms: i64) -> StoreResult<()> {
                let mut conn = self.writer.acquire().await?;
                move_feed_position_on(&mut conn, cursor, now_ms).await
            }

            async fn reset_feed_position(&self, now_ms: i64) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO feed_position (id, cursor, updated_ms) VALUES (1, '', $1) \
                     ON CONFLICT (id) DO UPDATE SET cursor = '', updated_ms = excluded.updated_ms",
                )
                .bind(now_ms)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn record_event(&self, e: &AppliedEvent, moves_cursor: bool) -> StoreResult<()> {
                // The batch of one: on PostgreSQL one statement, its own
                // transaction (each statement is a round trip, and this runs
                // for every event applied alone).
                let cursor = moves_cursor.then_some(e.cursor.as_str());
                self.record_events(std::slice::from_ref(e), cursor).await
            }

            async fn record_events(
                &self,
                events: &[AppliedEvent],
                cursor: Option<&str>,
            ) -> StoreResult<()> {
                let Some(last) = events.last() else {
                    return Ok(());
                };
                if record_events_at_once(&self.writer, events, cursor).await? {
                    return Ok(());
                }
                db::retry_transient("record events", TRIES, || async {
                    let mut tx = self.writer.begin().await?;
                    for e in events {
                        record_event_on(&mut tx, e, false).await?;
                    }
                    if let Some(cursor) = cursor {
                        move_feed_position_on(&mut tx, cursor, last.applied_ms).await?;
                    }
                    tx.commit().await?;
                    Ok(())
                })
                .await
            }

            async fn events_seen(
                &self,
                events: &[(&str, &str)],
            ) -> StoreResult<Vec<(Option<EventOutcome>, Option<i64>)>> {
                if events.is_empty() {
                    return Ok(Vec::new());
                }
                let list = |from: usize| {
                    (from..from + events.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
                };
                // One read for both: an event's row carries its outcome, a
                // resource's its version.
                let sql = format!(
                    "SELECT event_id AS id, outcome, CAST(NULL AS BIGINT) AS version \
                     FROM applied_events WHERE event_id IN ({}) \
                     UNION ALL SELECT resource_id, NULL, version \
                     FROM resource_versions WHERE resource_id IN ({})",
                    list(1),
                    list(events.len() + 1)
                );
                let mut read = sqlx::query_as::<_, (String, Option<String>, Option<i64>)>(&sql);
                for (event_id, _) in events {
                    read = read.bind(*event_id);
                }
                for (_, resource_id) in events {
                    read = read.bind(*resource_id);
                }
                let mut outcomes = std::collections::HashMap::new();
                let mut versions = std::collections::HashMap::new();
                for (id, outcome, version) in read.fetch_all(&self.reader).await? {
                    match (outcome, version) {
                        (Some(outcome), _) => {
                            outcomes.insert(id, event_outcome::from_stored(&outcome)?);
                        }
                        (None, Some(version)) => {
                            versions.insert(id, version);
                        }
                        (None, None) => {}
                    }
                }
                Ok(events
                    .iter()
                    .map(|(event_id, resource_id)| {
                        (
                            outcomes.get(*event_id).copied(),
                            versions.get(*resource_id).copied(),
                        )
                    })
                    .collect())
            }

            async fn pending_orders(&self, ids: &[&OrderId]) -> StoreResult<Vec<OrderId>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "SELECT id FROM orders WHERE status = $1 AND id IN ({})",
                    (2..ids.len() + 2).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
                );
                let mut read = sqlx::query_as::<_, (String,)>(&sql)
                    .bind(order_status::to_stored(OrderStatus::PendingPayment));
                for id in ids {
                    read = read.bind(*id);
                }
                Ok(read
                    .fetch_all(&self.reader)
                    .await?
                    .into_iter()
                    .map(|(id,)| OrderId::from_stored(id))
                    .collect())
            }

            async fn recent_events(&self, limit: i64) -> StoreResult<Vec<AppliedEvent>> {
                let rows: Vec<(String, String, String, i64, String, String, i64)> = sqlx::query_as(
                    "SELECT event_id, event_type, resource_id, resource_version, cursor, outcome, \
                     applied_ms FROM applied_events ORDER BY applied_ms DESC, event_id LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.reader)
                .await?;
                rows.into_iter()
                    .map(|(event_id, event_type, resource_id, resource_version, cursor, outcome, applied_ms)| {
                        Ok(AppliedEvent {
                            event_id,
                            event_type,
                            resource_id,
                            resource_version,
                            cursor,
                            outcome: event_outcome::from_stored(&outcome)?,
                            applied_ms,
                        })
                    })
                    .collect()
            }
        }
    };
}

mod sqlite_impl {
    use super::*;
    use crate::domain::model::OrderStatus;

    /// SQLite records events one after another in one transaction (its
    /// statements are calls into the library, not round trips).
    async fn record_events_at_once(
        _: &SqlitePool,
        _: &[AppliedEvent],
        _: Option<&str>,
    ) -> StoreResult<bool> {
        Ok(false)
    }

    impl_store!(SqliteStore, Backend::Sqlite, sqlx::SqliteConnection);
}
mod postgres_impl {
    use super::*;
    use crate::domain::model::OrderStatus;

    /// `record_events` in one statement (`RECORD_EVENTS_AT_ONCE`).
    async fn record_events_at_once(
        pool: &PgPool,
        events: &[AppliedEvent],
        cursor: Option<&str>,
    ) -> StoreResult<bool> {
        let col = |f: fn(&AppliedEvent) -> &str| -> Vec<&str> { events.iter().map(f).collect() };
        let num = |f: fn(&AppliedEvent) -> i64| -> Vec<i64> { events.iter().map(f).collect() };
        db::retry_transient("record events", TRIES, || async {
            sqlx::query(RECORD_EVENTS_AT_ONCE)
                .bind(col(|e| &e.event_id))
                .bind(col(|e| &e.event_type))
                .bind(col(|e| &e.resource_id))
                .bind(num(|e| e.resource_version))
                .bind(col(|e| &e.cursor))
                .bind(col(|e| event_outcome::to_stored(e.outcome)))
                .bind(num(|e| e.applied_ms))
                .bind(cursor)
                .bind(events.last().map_or(0, |e| e.applied_ms))
                .execute(pool)
                .await?;
            Ok(())
        })
        .await?;
        Ok(true)
    }

    impl_store!(PgStore, Backend::Postgres, sqlx::PgConnection);
}
