//! The two backends. Every statement is the same SQL on both (sqlx binds
//! `$N` on SQLite too), so one macro writes the `Store` impl for each; the
//! backends differ only in their pools and migrations.
use paybind_shared::db;
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool};

use super::*;

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let (writer, reader) = db::sqlite_pools(url, max_connections).await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        Ok(Self { writer, reader })
    }
}

pub struct PgStore {
    writer: PgPool,
    reader: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let pool = db::pg_pool(url, max_connections).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            writer: pool.clone(),
            reader: pool,
        })
    }
}

const ORDER_COLUMNS: &str = "id, user_id, amount_minor, currency, description, status, \
     decline_reason, payment_id, refunded_minor, session_id, page_url, paid_with_card_on_file, \
     presentation, return_url, idempotency_key, request_hash, created_ms, updated_ms";

macro_rules! impl_store {
    ($store:ty, $db:ty, $name:literal, $conn:ty) => {
        async fn insert_order_on(conn: &mut $conn, o: &OrderRow) -> StoreResult<(OrderRow, bool)> {
            let inserted = sqlx::query_as::<$db, OrderRow>(&format!(
                "INSERT INTO orders ({ORDER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                 $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
                 ON CONFLICT (idempotency_key) DO NOTHING RETURNING *"
            ))
            .bind(&o.id)
            .bind(&o.user_id)
            .bind(o.amount_minor)
            .bind(&o.currency)
            .bind(&o.description)
            .bind(&o.status)
            .bind(&o.decline_reason)
            .bind(&o.payment_id)
            .bind(o.refunded_minor)
            .bind(&o.session_id)
            .bind(&o.page_url)
            .bind(o.paid_with_card_on_file)
            .bind(&o.presentation)
            .bind(&o.return_url)
            .bind(&o.idempotency_key)
            .bind(&o.request_hash)
            .bind(o.created_ms)
            .bind(o.updated_ms)
            .fetch_optional(&mut *conn)
            .await
            .map_err(classify)?;
            if let Some(row) = inserted {
                return Ok((row, true));
            }
            let existing = sqlx::query_as::<$db, OrderRow>("SELECT * FROM orders WHERE idempotency_key = $1")
                .bind(&o.idempotency_key)
                .fetch_one(&mut *conn)
                .await?;
            Ok((existing, false))
        }

        async fn update_order_on(
            conn: &mut $conn,
            id: &str,
            from: &[&str],
            u: &OrderUpdate,
            now_ms: i64,
        ) -> StoreResult<Option<OrderRow>> {
            // Statuses are a fixed vocabulary of ours, never user input.
            let from_list = from.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
            Ok(sqlx::query_as::<$db, OrderRow>(&format!(
                "UPDATE orders SET status = $2, decline_reason = $3, \
                 payment_id = COALESCE($4, payment_id), session_id = COALESCE($5, session_id), \
                 page_url = COALESCE($6, page_url), paid_with_card_on_file = $7, updated_ms = $8 \
                 WHERE id = $1 AND status IN ({from_list}) RETURNING *"
            ))
            .bind(id)
            .bind(&u.status)
            .bind(&u.decline_reason)
            .bind(&u.payment_id)
            .bind(&u.session_id)
            .bind(&u.page_url)
            .bind(u.paid_with_card_on_file)
            .bind(now_ms)
            .fetch_optional(&mut *conn)
            .await?)
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $name
            }

            async fn insert_user(&self, u: &UserRow) -> StoreResult<()> {
                sqlx::query::<$db>(
                    "INSERT INTO users (id, display_name, phone, created_ms) VALUES ($1, $2, $3, $4)",
                )
                .bind(&u.id)
                .bind(&u.display_name)
                .bind(&u.phone)
                .bind(u.created_ms)
                .execute(&self.writer)
                .await
                .map_err(classify)?;
                Ok(())
            }

            async fn get_user(&self, id: &str) -> StoreResult<Option<UserRow>> {
                Ok(sqlx::query_as::<$db, UserRow>("SELECT * FROM users WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.reader)
                    .await?)
            }

            async fn set_binding(&self, user_id: &str, b: Option<&StoredBinding>) -> StoreResult<()> {
                sqlx::query::<$db>(
                    "UPDATE users SET binding_id = $2, binding_token = $3, card_brand = $4, \
                     card_last4 = $5, exp_month = $6, exp_year = $7, bound_ms = $8 WHERE id = $1",
                )
                .bind(user_id)
                .bind(b.map(|b| b.binding_id.clone()))
                .bind(b.map(|b| b.token.clone()))
                .bind(b.map(|b| b.brand.clone()))
                .bind(b.map(|b| b.last4.clone()))
                .bind(b.map(|b| b.exp_month))
                .bind(b.map(|b| b.exp_year))
                .bind(b.map(|b| b.bound_ms))
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn clear_binding_if(&self, user_id: &str, binding_id: &str) -> StoreResult<()> {
                sqlx::query::<$db>(
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

            async fn insert_order(&self, o: &OrderRow) -> StoreResult<(OrderRow, bool)> {
                let mut conn = self.writer.acquire().await?;
                insert_order_on(&mut conn, o).await
            }

            async fn insert_orders(&self, orders: &[OrderRow]) -> StoreResult<Vec<(OrderRow, bool)>> {
                let mut tx = self.writer.begin().await?;
                let mut out = Vec::with_capacity(orders.len());
                for o in orders {
                    out.push(insert_order_on(&mut tx, o).await?);
                }
                tx.commit().await?;
                Ok(out)
            }

            async fn get_order(&self, id: &str) -> StoreResult<Option<OrderRow>> {
                Ok(sqlx::query_as::<$db, OrderRow>("SELECT * FROM orders WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.reader)
                    .await?)
            }

            async fn order_by_session(&self, session_id: &str) -> StoreResult<Option<OrderRow>> {
                Ok(sqlx::query_as::<$db, OrderRow>("SELECT * FROM orders WHERE session_id = $1")
                    .bind(session_id)
                    .fetch_optional(&self.reader)
                    .await?)
            }

            async fn update_order(
                &self,
                id: &str,
                from: &[&str],
                u: &OrderUpdate,
                now_ms: i64,
            ) -> StoreResult<Option<OrderRow>> {
                let mut conn = self.writer.acquire().await?;
                update_order_on(&mut conn, id, from, u, now_ms).await
            }

            async fn update_orders(&self, transitions: &[OrderTransition]) -> StoreResult<Vec<Option<OrderRow>>> {
                let mut tx = self.writer.begin().await?;
                let mut out = Vec::with_capacity(transitions.len());
                for t in transitions {
                    out.push(update_order_on(&mut tx, &t.order_id, &t.from, &t.update, t.now_ms).await?);
                }
                tx.commit().await?;
                Ok(out)
            }

            async fn set_refunded(&self, id: &str, refunded: i64, now_ms: i64) -> StoreResult<Option<OrderRow>> {
                Ok(sqlx::query_as::<$db, OrderRow>(
                    "UPDATE orders SET refunded_minor = $2, updated_ms = $3 WHERE id = $1 RETURNING *",
                )
                .bind(id)
                .bind(refunded)
                .bind(now_ms)
                .fetch_optional(&self.writer)
                .await?)
            }

            async fn list_orders(&self, user_id: &str, after: Option<(i64, String)>, limit: i64) -> StoreResult<Vec<OrderRow>> {
                let (after_ms, after_id) = match after {
                    Some((ms, id)) => (Some(ms), Some(id)),
                    None => (None, None),
                };
                Ok(sqlx::query_as::<$db, OrderRow>(
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

            async fn stale_pending_orders(&self, before_ms: i64, limit: i64) -> StoreResult<Vec<OrderRow>> {
                Ok(sqlx::query_as::<$db, OrderRow>(
                    "SELECT * FROM orders WHERE status = 'PENDING_PAYMENT' AND updated_ms < $1 \
                     ORDER BY updated_ms LIMIT $2",
                )
                .bind(before_ms)
                .bind(limit)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn insert_session(&self, id: &str, user_id: &str, order_id: Option<&str>, now_ms: i64) -> StoreResult<()> {
                sqlx::query::<$db>(
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

            async fn session_user(&self, id: &str) -> StoreResult<Option<String>> {
                let row: Option<(String,)> =
                    sqlx::query_as::<$db, (String,)>("SELECT user_id FROM bind_sessions WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.reader)
                        .await?;
                Ok(row.map(|(u,)| u))
            }
        }
    };
}

mod sqlite_impl {
    use super::*;
    impl_store!(SqliteStore, Sqlite, "sqlite", sqlx::SqliteConnection);
}
mod postgres_impl {
    use super::*;
    impl_store!(PgStore, Postgres, "postgres", sqlx::PgConnection);
}
