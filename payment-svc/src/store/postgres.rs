//! PostgreSQL, the production backend. The hot path is the `reserve_payment`
//! function (migration 0002): one round trip per payment.
use sqlx::{PgPool, Postgres};

super::common::impl_store!(PgStore, Postgres);

pub struct PgStore {
    pool: PgPool,
}

#[derive(sqlx::FromRow)]
struct Reserved {
    #[allow(dead_code)] // selected to keep the rows in request order
    ord: i64,
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

    /// A batch of reservations in one statement (one commit): the
    /// `reserve_payment` function once per request, in binding order so that
    /// concurrent batches take the binding locks in the same order. If the
    /// batch fails (a deadlock over one idempotency key claimed through two
    /// bindings at once), each request is tried on its own.
    async fn reserve_payments_impl(
        &self,
        requests: &[ReservePayment],
    ) -> StoreResult<Vec<ReserveOutcome>> {
        if requests.len() > 1 {
            match self.reserve_batch(requests).await {
                Ok(outcomes) => return Ok(outcomes),
                Err(e) => {
                    tracing::warn!(error = %e, "reservation batch failed; trying each on its own")
                }
            }
        }
        let mut outcomes = Vec::with_capacity(requests.len());
        for r in requests {
            let mut one = self.reserve_batch(std::slice::from_ref(r)).await?;
            outcomes.push(
                one.pop()
                    .ok_or_else(|| StoreError::Corrupt("no outcome".into()))?,
            );
        }
        Ok(outcomes)
    }

    async fn reserve_batch(&self, requests: &[ReservePayment]) -> StoreResult<Vec<ReserveOutcome>> {
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by(|a, b| requests[*a].binding_id.cmp(&requests[*b].binding_id));
        let col = |f: &dyn Fn(&ReservePayment) -> String| -> Vec<String> {
            order.iter().map(|i| f(&requests[*i])).collect()
        };
        let num = |f: &dyn Fn(&ReservePayment) -> i64| -> Vec<i64> {
            order.iter().map(|i| f(&requests[*i])).collect()
        };
        let rows: Vec<Reserved> = sqlx::query_as(
            "SELECT a.ord, r.* FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
                 $5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[], \
                 $11::bigint[], $12::bigint[]) WITH ORDINALITY \
                 AS a(payment_id, merchant_id, binding_id, user_id, order_id, amount, currency, \
                      description, idem_key, request_hash, day, now_ms, ord) \
             CROSS JOIN LATERAL reserve_payment(a.payment_id, a.merchant_id, a.binding_id, \
                 a.user_id, a.order_id, a.amount, a.currency, a.description, a.idem_key, \
                 a.request_hash, a.day, a.now_ms) r \
             ORDER BY a.ord",
        )
        .bind(col(&|r| r.payment_id.clone()))
        .bind(col(&|r| r.merchant_id.clone()))
        .bind(col(&|r| r.binding_id.clone()))
        .bind(col(&|r| r.merchant_user_id.clone()))
        .bind(col(&|r| r.order_id.clone()))
        .bind(num(&|r| r.amount_minor))
        .bind(col(&|r| r.currency.clone()))
        .bind(col(&|r| r.description.clone()))
        .bind(col(&|r| r.idempotency_key.clone()))
        .bind(col(&|r| r.request_hash.clone()))
        .bind(num(&|r| r.day))
        .bind(num(&|r| r.now_ms))
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
        for (position, row) in rows.into_iter().enumerate() {
            let index = order[position];
            outcomes[index] = Some(self.outcome(&requests[index], row).await?);
        }
        outcomes
            .into_iter()
            .map(|o| o.ok_or_else(|| StoreError::Corrupt("missing outcome".into())))
            .collect()
    }

    async fn outcome(&self, r: &ReservePayment, row: Reserved) -> StoreResult<ReserveOutcome> {
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
    async fn finalize_payments_impl(
        &self,
        outcomes: &[PaymentOutcome],
    ) -> StoreResult<Vec<PaymentRow>> {
        let ids: Vec<&str> = outcomes.iter().map(|o| o.payment_id.as_str()).collect();
        let statuses: Vec<&str> = outcomes.iter().map(|o| o.status.as_str()).collect();
        let reasons: Vec<Option<&str>> = outcomes
            .iter()
            .map(|o| o.decline_reason.as_deref())
            .collect();
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
