//! PostgreSQL, the production backend. The hot path is the `reserve_payment`
//! function (migration 0002): one round trip per payment.
use sqlx::{PgPool, Postgres};

super::common::impl_store!(PgStore, Postgres);

pub struct PgStore {
    pool: PgPool,
}

#[derive(sqlx::FromRow)]
struct Reserved {
    o_outcome: String,
    o_per_payment_limit: i64,
    o_remaining_today: i64,
    o_pan_ct: Option<Vec<u8>>,
    o_pan_key_id: Option<String>,
    o_exp_month: i64,
    o_exp_year: i64,
}

impl PgStore {
    const BACKEND: &'static str = "postgres";

    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let pool = paybind_shared::db::pg_pool(url, max_connections).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    async fn reserve_payment_impl(&self, r: &ReservePayment) -> StoreResult<ReserveOutcome> {
        let row: Reserved = sqlx::query_as(
            "SELECT * FROM reserve_payment($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&r.payment_id)
        .bind(&r.merchant_id)
        .bind(&r.binding_id)
        .bind(&r.merchant_user_id)
        .bind(&r.order_id)
        .bind(r.amount_minor)
        .bind(&r.currency)
        .bind(&r.description)
        .bind(&r.idempotency_key)
        .bind(&r.request_hash)
        .bind(r.day)
        .bind(r.now_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        Ok(match row.o_outcome.as_str() {
            "RESERVED" => ReserveOutcome::Reserved(VaultedCard {
                pan_ct: row
                    .o_pan_ct
                    .ok_or_else(|| StoreError::Corrupt("no card".into()))?,
                pan_key_id: row.o_pan_key_id.unwrap_or_default(),
                exp_month: row.o_exp_month,
                exp_year: row.o_exp_year,
            }),
            "EXISTING" => {
                let existing: PaymentRow = sqlx::query_as(SELECT_PAYMENT_BY_KEY)
                    .bind(&r.merchant_id)
                    .bind(&r.idempotency_key)
                    .fetch_one(&self.pool)
                    .await?;
                ReserveOutcome::Existing(existing)
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

    /// All outcomes in one statement: the payments updated, and declined
    /// amounts given back to the day they were counted on.
    async fn finalize_payments_impl(&self, outcomes: &[PaymentOutcome]) -> StoreResult<Vec<PaymentRow>> {
        let ids: Vec<&str> = outcomes.iter().map(|o| o.payment_id.as_str()).collect();
        let statuses: Vec<&str> = outcomes.iter().map(|o| o.status.as_str()).collect();
        let reasons: Vec<Option<&str>> = outcomes.iter().map(|o| o.decline_reason.as_deref()).collect();
        let refs: Vec<Option<&str>> = outcomes.iter().map(|o| o.acquirer_ref.as_deref()).collect();
        let times: Vec<i64> = outcomes.iter().map(|o| o.now_ms).collect();
        Ok(sqlx::query_as(
            "WITH v AS ( \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) \
                     AS v(id, status, reason, ref, now_ms)), \
             p AS ( \
                 UPDATE payments SET status = v.status, decline_reason = v.reason, \
                     acquirer_ref = v.ref, updated_ms = v.now_ms \
                 FROM v WHERE payments.id = ANY($1::text[]) AND payments.id = v.id \
                     AND payments.status = 'PENDING' \
                 RETURNING payments.*), \
             released AS ( \
                 UPDATE bindings b SET usage_amount = b.usage_amount - d.total \
                 FROM (SELECT binding_id, counted_day, SUM(amount_minor) AS total FROM p \
                       WHERE p.status = 'DECLINED' AND p.binding_id IS NOT NULL \
                         AND p.counted_day IS NOT NULL \
                       GROUP BY binding_id, counted_day) d \
                 WHERE b.id = d.binding_id AND b.usage_day = d.counted_day \
                 RETURNING b.id) \
             SELECT * FROM p",
        )
        .bind(ids)
        .bind(statuses)
        .bind(reasons)
        .bind(refs)
        .bind(times)
        // Planned for each batch: a cached generic plan made while the table
        // was small would keep scanning the whole table as it grows.
        .persistent(false)
        .fetch_all(&self.pool)
        .await?)
    }
}
