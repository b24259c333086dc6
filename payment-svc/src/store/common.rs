//! The parts of the store whose SQL is the same on SQLite and PostgreSQL
//! (sqlx binds `$N` on both). `impl_store!` writes the `Store` impl for one
//! backend type, which provides `reader()`, `writer()`, `BACKEND` and its own
//! `reserve_payment_impl` (the hot path is written per backend).

macro_rules! session_columns {
    () => {
        "id, merchant_id, merchant_user_id, kind, presentation, return_url, prefill_name, \
         prefill_phone, status, version, created_ms, expires_ms, attempts_left, idempotency_key, \
         request_hash, order_id, amount_minor, currency, description, shopper_name, id_number_ct, \
         id_key_id, phone, pan_ct, pan_key_id, card_fingerprint, card_brand, card_last4, exp_month, \
         exp_year, otp_hash, otp_expires_ms, otp_tries_left, otp_sent_ms, otp_resends, last_error, \
         binding_id, payment_id"
    };
}

macro_rules! binding_columns {
    () => {
        "id, merchant_id, merchant_user_id, status, card_fingerprint, pan_ct, pan_key_id, \
         card_brand, card_last4, exp_month, exp_year, holder_name, id_number_ct, id_key_id, phone, \
         currency, per_payment_limit, daily_limit, usage_day, usage_amount, created_ms, revoked_ms, \
         revoke_reason"
    };
}

macro_rules! payment_columns {
    () => {
        "id, merchant_id, merchant_user_id, binding_id, session_id, order_id, amount_minor, \
         currency, description, status, decline_reason, acquirer_ref, counted_day, refunded_minor, \
         shopper_authenticated, idempotency_key, request_hash, created_ms, updated_ms"
    };
}

pub(super) const INSERT_SESSION: &str = concat!(
    "INSERT INTO bind_sessions (",
    session_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36, \
     $37, $38) ON CONFLICT (merchant_id, idempotency_key) DO NOTHING RETURNING ",
    session_columns!()
);

pub(super) const UPDATE_SESSION: &str = "UPDATE bind_sessions SET status = $2, version = $3, \
     attempts_left = $4, shopper_name = $5, id_number_ct = $6, id_key_id = $7, phone = $8, \
     pan_ct = $9, pan_key_id = $10, card_fingerprint = $11, card_brand = $12, card_last4 = $13, \
     exp_month = $14, exp_year = $15, otp_hash = $16, otp_expires_ms = $17, otp_tries_left = $18, \
     otp_sent_ms = $19, otp_resends = $20, last_error = $21, binding_id = $22, payment_id = $23 \
     WHERE id = $1 AND version = $24";

pub(super) const INSERT_BINDING: &str = concat!(
    "INSERT INTO bindings (",
    binding_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     $19, $20, $21, $22, $23) \
     ON CONFLICT (merchant_id, merchant_user_id, card_fingerprint) WHERE status = 'ACTIVE' \
     DO NOTHING RETURNING id"
);

pub(super) const INSERT_PAYMENT: &str = concat!(
    "INSERT INTO payments (",
    payment_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
);

pub(super) const SELECT_PAYMENT_BY_KEY: &str =
    "SELECT * FROM payments WHERE merchant_id = $1 AND idempotency_key = $2";

macro_rules! impl_store {
    ($store:ty, $db:ty) => {
        use sqlx::query::{Query, QueryAs};
        use $crate::store::common::*;
        use $crate::store::*;

        type Args<'q> = <$db as sqlx::Database>::Arguments<'q>;

        fn bind_session<'q, O>(
            q: QueryAs<'q, $db, O, Args<'q>>,
            s: &'q SessionRow,
        ) -> QueryAs<'q, $db, O, Args<'q>> {
            q.bind(&s.id)
                .bind(&s.merchant_id)
                .bind(&s.merchant_user_id)
                .bind(&s.kind)
                .bind(&s.presentation)
                .bind(&s.return_url)
                .bind(&s.prefill_name)
                .bind(&s.prefill_phone)
                .bind(&s.status)
                .bind(s.version)
                .bind(s.created_ms)
                .bind(s.expires_ms)
                .bind(s.attempts_left)
                .bind(&s.idempotency_key)
                .bind(&s.request_hash)
                .bind(&s.order_id)
                .bind(s.amount_minor)
                .bind(&s.currency)
                .bind(&s.description)
                .bind(&s.shopper_name)
                .bind(&s.id_number_ct)
                .bind(&s.id_key_id)
                .bind(&s.phone)
                .bind(&s.pan_ct)
                .bind(&s.pan_key_id)
                .bind(&s.card_fingerprint)
                .bind(&s.card_brand)
                .bind(&s.card_last4)
                .bind(s.exp_month)
                .bind(s.exp_year)
                .bind(&s.otp_hash)
                .bind(s.otp_expires_ms)
                .bind(s.otp_tries_left)
                .bind(s.otp_sent_ms)
                .bind(s.otp_resends)
                .bind(&s.last_error)
                .bind(&s.binding_id)
                .bind(&s.payment_id)
        }

        fn bind_session_update<'q>(
            q: Query<'q, $db, Args<'q>>,
            s: &'q SessionRow,
            expected_version: i64,
        ) -> Query<'q, $db, Args<'q>> {
            q.bind(&s.id)
                .bind(&s.status)
                .bind(s.version)
                .bind(s.attempts_left)
                .bind(&s.shopper_name)
                .bind(&s.id_number_ct)
                .bind(&s.id_key_id)
                .bind(&s.phone)
                .bind(&s.pan_ct)
                .bind(&s.pan_key_id)
                .bind(&s.card_fingerprint)
                .bind(&s.card_brand)
                .bind(&s.card_last4)
                .bind(s.exp_month)
                .bind(s.exp_year)
                .bind(&s.otp_hash)
                .bind(s.otp_expires_ms)
                .bind(s.otp_tries_left)
                .bind(s.otp_sent_ms)
                .bind(s.otp_resends)
                .bind(&s.last_error)
                .bind(&s.binding_id)
                .bind(&s.payment_id)
                .bind(expected_version)
        }

        fn bind_binding<'q, O>(
            q: QueryAs<'q, $db, O, Args<'q>>,
            b: &'q BindingRow,
        ) -> QueryAs<'q, $db, O, Args<'q>> {
            q.bind(&b.id)
                .bind(&b.merchant_id)
                .bind(&b.merchant_user_id)
                .bind(&b.status)
                .bind(&b.card_fingerprint)
                .bind(&b.pan_ct)
                .bind(&b.pan_key_id)
                .bind(&b.card_brand)
                .bind(&b.card_last4)
                .bind(b.exp_month)
                .bind(b.exp_year)
                .bind(&b.holder_name)
                .bind(&b.id_number_ct)
                .bind(&b.id_key_id)
                .bind(&b.phone)
                .bind(&b.currency)
                .bind(b.per_payment_limit)
                .bind(b.daily_limit)
                .bind(b.usage_day)
                .bind(b.usage_amount)
                .bind(b.created_ms)
                .bind(b.revoked_ms)
                .bind(&b.revoke_reason)
        }

        fn bind_payment<'q>(
            q: Query<'q, $db, Args<'q>>,
            p: &'q PaymentRow,
        ) -> Query<'q, $db, Args<'q>> {
            q.bind(&p.id)
                .bind(&p.merchant_id)
                .bind(&p.merchant_user_id)
                .bind(&p.binding_id)
                .bind(&p.session_id)
                .bind(&p.order_id)
                .bind(p.amount_minor)
                .bind(&p.currency)
                .bind(&p.description)
                .bind(&p.status)
                .bind(&p.decline_reason)
                .bind(&p.acquirer_ref)
                .bind(p.counted_day)
                .bind(p.refunded_minor)
                .bind(p.shopper_authenticated)
                .bind(&p.idempotency_key)
                .bind(&p.request_hash)
                .bind(p.created_ms)
                .bind(p.updated_ms)
        }

        #[async_trait::async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                Self::BACKEND
            }

            async fn insert_merchant(&self, m: &MerchantRow) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO merchants (id, display_name, cert_identity, allowed_origins, \
                     return_urls, direct_entry, currency, per_payment_limit, daily_limit, \
                     created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&m.id)
                .bind(&m.display_name)
                .bind(&m.cert_identity)
                .bind(&m.allowed_origins)
                .bind(&m.return_urls)
                .bind(m.direct_entry)
                .bind(&m.currency)
                .bind(m.per_payment_limit)
                .bind(m.daily_limit)
                .bind(m.created_ms)
                .execute(self.writer())
                .await
                .map_err(classify)?;
                Ok(())
            }

            async fn merchant_by_cert_identity(&self, identity: &str) -> StoreResult<Option<MerchantRow>> {
                Ok(sqlx::query_as("SELECT * FROM merchants WHERE cert_identity = $1")
                    .bind(identity)
                    .fetch_optional(self.reader())
                    .await?)
            }

            async fn list_merchants(&self) -> StoreResult<Vec<MerchantRow>> {
                Ok(sqlx::query_as("SELECT * FROM merchants ORDER BY id")
                    .fetch_all(self.reader())
                    .await?)
            }

            async fn insert_session(&self, session: &SessionRow) -> StoreResult<Inserted<SessionRow>> {
                let inserted: Option<SessionRow> =
                    bind_session(sqlx::query_as(INSERT_SESSION), session)
                        .fetch_optional(self.writer())
                        .await
                        .map_err(classify)?;
                if let Some(row) = inserted {
                    return Ok(Inserted::New(row));
                }
                let existing: SessionRow = sqlx::query_as(
                    "SELECT * FROM bind_sessions WHERE merchant_id = $1 AND idempotency_key = $2",
                )
                .bind(&session.merchant_id)
                .bind(&session.idempotency_key)
                .fetch_one(self.writer())
                .await?;
                Ok(Inserted::Existing(existing))
            }

            async fn get_session(&self, merchant_id: &str, session_id: &str) -> StoreResult<Option<SessionRow>> {
                Ok(sqlx::query_as("SELECT * FROM bind_sessions WHERE merchant_id = $1 AND id = $2")
                    .bind(merchant_id)
                    .bind(session_id)
                    .fetch_optional(self.reader())
                    .await?)
            }

            async fn apply_session_change(&self, change: SessionChange) -> StoreResult<SessionRow> {
                let SessionChange {
                    mut session,
                    new_binding,
                    new_payment,
                    payment_final,
                } = change;
                let mut tx = self.writer().begin().await?;
                let mut binding_id = None;
                if let Some(binding) = &new_binding {
                    let inserted: Option<(String,)> =
                        bind_binding(sqlx::query_as(INSERT_BINDING), binding)
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(classify)?;
                    let id = match inserted {
                        Some((id,)) => id,
                        None => {
                            // The user already has an active binding for this card.
                            let (id,): (String,) = sqlx::query_as(
                                "SELECT id FROM bindings WHERE merchant_id = $1 AND \
                                 merchant_user_id = $2 AND card_fingerprint = $3 AND status = 'ACTIVE'",
                            )
                            .bind(&binding.merchant_id)
                            .bind(&binding.merchant_user_id)
                            .bind(&binding.card_fingerprint)
                            .fetch_one(&mut *tx)
                            .await?;
                            id
                        }
                    };
                    session.binding_id = Some(id.clone());
                    binding_id = Some(id);
                }
                if let Some(payment) = &new_payment {
                    bind_payment(sqlx::query(INSERT_PAYMENT), payment)
                        .execute(&mut *tx)
                        .await
                        .map_err(classify)?;
                }
                if let Some(outcome) = &payment_final {
                    sqlx::query(
                        "UPDATE payments SET status = $2, decline_reason = $3, acquirer_ref = $4, \
                         updated_ms = $5, binding_id = COALESCE($6, binding_id) WHERE id = $1",
                    )
                    .bind(&outcome.payment_id)
                    .bind(&outcome.status)
                    .bind(&outcome.decline_reason)
                    .bind(&outcome.acquirer_ref)
                    .bind(outcome.now_ms)
                    .bind(&binding_id)
                    .execute(&mut *tx)
                    .await?;
                }
                let expected = session.version;
                session.version += 1;
                let updated = bind_session_update(sqlx::query(UPDATE_SESSION), &session, expected)
                    .execute(&mut *tx)
                    .await?;
                if updated.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Err(StoreError::VersionConflict);
                }
                tx.commit().await?;
                Ok(session)
            }

            async fn get_binding(&self, merchant_id: &str, binding_id: &str) -> StoreResult<Option<BindingRow>> {
                Ok(sqlx::query_as("SELECT * FROM bindings WHERE merchant_id = $1 AND id = $2")
                    .bind(merchant_id)
                    .bind(binding_id)
                    .fetch_optional(self.reader())
                    .await?)
            }

            async fn list_bindings(&self, q: &BindingQuery) -> StoreResult<Vec<BindingRow>> {
                let (after_ms, after_id) = match &q.after {
                    Some((ms, id)) => (Some(*ms), Some(id.as_str())),
                    None => (None, None),
                };
                Ok(sqlx::query_as(
                    "SELECT * FROM bindings WHERE merchant_id = $1 AND merchant_user_id = $2 \
                     AND ($3 OR status = 'ACTIVE') \
                     AND ($4 IS NULL OR created_ms < $4 OR (created_ms = $4 AND id < $5)) \
                     ORDER BY created_ms DESC, id DESC LIMIT $6",
                )
                .bind(&q.merchant_id)
                .bind(&q.merchant_user_id)
                .bind(q.include_revoked)
                .bind(after_ms)
                .bind(after_id)
                .bind(q.limit)
                .fetch_all(self.reader())
                .await?)
            }

            async fn revoke_binding(
                &self,
                merchant_id: &str,
                binding_id: &str,
                reason: &str,
                now_ms: i64,
            ) -> StoreResult<Option<BindingRow>> {
                sqlx::query(
                    "UPDATE bindings SET status = 'REVOKED', revoked_ms = $3, revoke_reason = $4 \
                     WHERE merchant_id = $1 AND id = $2 AND status = 'ACTIVE'",
                )
                .bind(merchant_id)
                .bind(binding_id)
                .bind(now_ms)
                .bind(reason)
                .execute(self.writer())
                .await?;
                Ok(sqlx::query_as("SELECT * FROM bindings WHERE merchant_id = $1 AND id = $2")
                    .bind(merchant_id)
                    .bind(binding_id)
                    .fetch_optional(self.writer())
                    .await?)
            }

            async fn reserve_payments(&self, requests: &[ReservePayment]) -> StoreResult<Vec<ReserveOutcome>> {
                self.reserve_payments_impl(requests).await
            }

            async fn finalize_payments(&self, outcomes: &[PaymentOutcome]) -> StoreResult<Vec<PaymentRow>> {
                self.finalize_payments_impl(outcomes).await
            }

            async fn get_payment(&self, merchant_id: &str, payment_id: &str) -> StoreResult<Option<PaymentRow>> {
                Ok(sqlx::query_as("SELECT * FROM payments WHERE merchant_id = $1 AND id = $2")
                    .bind(merchant_id)
                    .bind(payment_id)
                    .fetch_optional(self.reader())
                    .await?)
            }

            async fn payment_by_id(&self, payment_id: &str) -> StoreResult<Option<PaymentRow>> {
                Ok(sqlx::query_as("SELECT * FROM payments WHERE id = $1")
                    .bind(payment_id)
                    .fetch_optional(self.writer())
                    .await?)
            }

            async fn reserve_refund(&self, r: &ReserveRefund) -> StoreResult<RefundReserveOutcome> {
                let existing_sql = "SELECT * FROM refunds WHERE merchant_id = $1 AND idempotency_key = $2";
                let mut tx = self.writer().begin().await?;
                let existing: Option<RefundRow> = sqlx::query_as(existing_sql)
                    .bind(&r.merchant_id)
                    .bind(&r.idempotency_key)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(existing) = existing {
                    return Ok(RefundReserveOutcome::Existing(existing));
                }
                let payment: Option<PaymentRow> =
                    sqlx::query_as("SELECT * FROM payments WHERE merchant_id = $1 AND id = $2")
                        .bind(&r.merchant_id)
                        .bind(&r.payment_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(payment) = payment else {
                    return Ok(RefundReserveOutcome::PaymentNotFound);
                };
                if payment.status != "SUCCEEDED" {
                    return Ok(RefundReserveOutcome::NotRefundable);
                }
                if payment.currency != r.currency {
                    return Ok(RefundReserveOutcome::CurrencyMismatch);
                }
                // The check and the increment are one statement, so concurrent
                // refunds can never add up to more than the payment.
                let updated: Option<PaymentRow> = sqlx::query_as(
                    "UPDATE payments SET refunded_minor = refunded_minor + $2, updated_ms = $3 \
                     WHERE id = $1 AND status = 'SUCCEEDED' AND refunded_minor + $2 <= amount_minor \
                     RETURNING *",
                )
                .bind(&r.payment_id)
                .bind(r.amount_minor)
                .bind(r.now_ms)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(payment) = updated else {
                    let (amount, refunded): (i64, i64) = sqlx::query_as(
                        "SELECT amount_minor, refunded_minor FROM payments WHERE id = $1",
                    )
                    .bind(&r.payment_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    return Ok(RefundReserveOutcome::Exceeds {
                        refundable: amount - refunded,
                    });
                };
                let refund: Option<RefundRow> = sqlx::query_as(
                    "INSERT INTO refunds (id, merchant_id, payment_id, amount_minor, currency, status, \
                     reason, idempotency_key, request_hash, created_ms, updated_ms) \
                     VALUES ($1, $2, $3, $4, $5, 'PENDING', $6, $7, $8, $9, $9) \
                     ON CONFLICT (merchant_id, idempotency_key) DO NOTHING RETURNING *",
                )
                .bind(&r.refund_id)
                .bind(&r.merchant_id)
                .bind(&r.payment_id)
                .bind(r.amount_minor)
                .bind(&r.currency)
                .bind(&r.reason)
                .bind(&r.idempotency_key)
                .bind(&r.request_hash)
                .bind(r.now_ms)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(refund) = refund else {
                    // A concurrent duplicate claimed the key first: undo ours.
                    tx.rollback().await?;
                    let existing: RefundRow = sqlx::query_as(existing_sql)
                        .bind(&r.merchant_id)
                        .bind(&r.idempotency_key)
                        .fetch_one(self.writer())
                        .await?;
                    return Ok(RefundReserveOutcome::Existing(existing));
                };
                tx.commit().await?;
                Ok(RefundReserveOutcome::Reserved { refund, payment })
            }

            async fn finalize_refund(&self, refund_id: &str, succeeded: bool, now_ms: i64) -> StoreResult<(RefundRow, PaymentRow)> {
                let mut tx = self.writer().begin().await?;
                let status = if succeeded { "SUCCEEDED" } else { "FAILED" };
                let updated: Option<RefundRow> = sqlx::query_as(
                    "UPDATE refunds SET status = $2, updated_ms = $3 WHERE id = $1 AND status = 'PENDING' RETURNING *",
                )
                .bind(refund_id)
                .bind(status)
                .bind(now_ms)
                .fetch_optional(&mut *tx)
                .await?;
                let refund: RefundRow = match updated {
                    Some(refund) => {
                        if !succeeded {
                            sqlx::query(
                                "UPDATE payments SET refunded_minor = refunded_minor - $2, updated_ms = $3 WHERE id = $1",
                            )
                            .bind(&refund.payment_id)
                            .bind(refund.amount_minor)
                            .bind(now_ms)
                            .execute(&mut *tx)
                            .await?;
                        }
                        refund
                    }
                    None => sqlx::query_as("SELECT * FROM refunds WHERE id = $1")
                        .bind(refund_id)
                        .fetch_one(&mut *tx)
                        .await?,
                };
                let payment: PaymentRow = sqlx::query_as("SELECT * FROM payments WHERE id = $1")
                    .bind(&refund.payment_id)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok((refund, payment))
            }
        }
    };
}

pub(super) use impl_store;
