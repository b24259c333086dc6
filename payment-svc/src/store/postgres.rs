//! PostgreSQL, the production backend. The hot path is the `reserve_payment`
//! function (migration 0002): one round trip per payment.
use sqlx::PgPool;

super::common::impl_store!(PgStore);

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
    const BACKEND: Backend = Backend::Postgres;

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
        // Each on its own: one that fails again fails alone.
        let mut outcomes = Vec::with_capacity(requests.len());
        for r in requests {
            let outcome = match self.reserve_batch(std::slice::from_ref(r)).await {
                Ok(mut one) => one
                    .pop()
                    .ok_or_else(|| StoreError::Corrupt("no outcome".into()))?,
                Err(e) => ReserveOutcome::Failed(e.to_string()),
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn reserve_batch(&self, requests: &[ReservePayment]) -> StoreResult<Vec<ReserveOutcome>> {
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by(|a, b| requests[*a].binding_id.cmp(&requests[*b].binding_id));
        let col = |f: &dyn Fn(&ReservePayment) -> &str| -> Vec<String> {
            order.iter().map(|i| f(&requests[*i]).to_owned()).collect()
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
            "RESERVED" => ReserveOutcome::Reserved(chargeable_card(
                row.o_pan_ct
                    .ok_or_else(|| StoreError::Corrupt("no card".into()))?,
                row.o_pan_key_id
                    .ok_or_else(|| StoreError::Corrupt("no card key".into()))?,
                row.o_exp_month,
                row.o_exp_year,
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

    /// All outcomes in one statement: the payments updated, and declined
    /// amounts given back to the day they were counted on.
    async fn finalize_payments_impl(
        &self,
        outcomes: &[PaymentOutcome],
    ) -> StoreResult<Vec<PaymentRow>> {
        let ids: Vec<&str> = outcomes.iter().map(|o| o.payment_id.as_str()).collect();
        let columns: Vec<_> = outcomes.iter().map(|o| state_columns(&o.state)).collect();
        let statuses: Vec<&str> = columns.iter().map(|c| c.0).collect();
        let reasons: Vec<Option<&str>> = columns.iter().map(|c| c.1).collect();
        let refs: Vec<Option<&str>> = columns.iter().map(|c| c.2.as_deref()).collect();
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
