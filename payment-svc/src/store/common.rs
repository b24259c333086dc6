//! The parts of the store whose SQL is the same on SQLite and PostgreSQL
//! (sqlx binds `$N` on both). `impl_store!` writes the `Store` impl for one
//! backend type, which provides `reader()`, `writer()`, `BACKEND` and its own
//! `reserve_payments_impl` / `finalize_payments_impl` (the hot path is
//! written per backend). Rows become domain values on the way out
//! (`rows.rs`), so nothing above this module sees a column.
use std::sync::LazyLock;

use paybind_shared::db::{insert_sql, versioned_update_sql};

use super::rows::{BindingRow, MerchantCertificateRow, PaymentRow, RefundRow, SessionRow};

pub(super) static INSERT_SESSION: LazyLock<String> = LazyLock::new(|| {
    insert_sql(
        "bind_sessions",
        SessionRow::COLUMNS,
        "ON CONFLICT (merchant_id, idempotency_key) DO NOTHING RETURNING *",
    )
});

pub(super) static UPDATE_SESSION: LazyLock<String> =
    LazyLock::new(|| versioned_update_sql("bind_sessions", SessionRow::COLUMNS));

pub(super) static INSERT_BINDING: LazyLock<String> = LazyLock::new(|| {
    insert_sql(
        "bindings",
        BindingRow::COLUMNS,
        "ON CONFLICT (merchant_id, merchant_user_id, card_fingerprint) WHERE status = 'ACTIVE' \
         DO NOTHING RETURNING id",
    )
});

/// Bindings as the domain reads them: their usage is their card's at the
/// merchant (`card_usage`), whichever binding paid. Filter on `b.`.
pub(super) static SELECT_BINDINGS: LazyLock<String> = LazyLock::new(|| {
    let columns: Vec<String> = BindingRow::COLUMNS
        .iter()
        .map(|c| match *c {
            "usage_day" | "usage_amount" => format!("COALESCE(cu.{c}, 0) AS {c}"),
            other => format!("b.{other}"),
        })
        .collect();
    format!(
        "SELECT {} FROM bindings b LEFT JOIN card_usage cu \
         ON cu.merchant_id = b.merchant_id AND cu.card_fingerprint = b.card_fingerprint",
        columns.join(", ")
    )
});

/// What binding a card again brings to its binding ($4-$11; $1-$3 are the
/// merchant, the user and the card): a new expiry, the holder and phone on
/// file now, a fresh sealed copy.
const CARD_REFRESH: &str = "exp_month = $4, exp_year = $5, pan_ct = $6, pan_key_id = $7, \
     holder_name = $8, id_number_ct = $9, id_key_id = $10, phone = $11";

/// The same card bound again after it expired: the newest such binding
/// comes back, unless the user has an active one for the card.
pub(super) static REVIVE_BINDING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE bindings SET status = 'ACTIVE', revoked_ms = NULL, revoke_reason = NULL, \
         revoked_by = NULL, {CARD_REFRESH} \
         WHERE status = 'REVOKED' AND id = ( \
             SELECT id FROM bindings WHERE merchant_id = $1 \
             AND merchant_user_id = $2 AND card_fingerprint = $3 \
             AND status = 'REVOKED' AND revoked_by = 'EXPIRY' \
             ORDER BY created_ms DESC LIMIT 1) \
         AND NOT EXISTS (SELECT 1 FROM bindings WHERE merchant_id = $1 \
             AND merchant_user_id = $2 AND card_fingerprint = $3 AND status = 'ACTIVE') \
         RETURNING id"
    )
});

/// The same card bound again while its binding is active.
pub(super) static REFRESH_BINDING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE bindings SET {CARD_REFRESH} \
         WHERE merchant_id = $1 AND merchant_user_id = $2 \
         AND card_fingerprint = $3 AND status = 'ACTIVE' RETURNING id"
    )
});

pub(super) static INSERT_REFUND: LazyLock<String> = LazyLock::new(|| {
    insert_sql(
        "refunds",
        RefundRow::COLUMNS,
        "ON CONFLICT (merchant_id, idempotency_key) DO NOTHING RETURNING *",
    )
});

pub(super) static INSERT_PAYMENT: LazyLock<String> =
    LazyLock::new(|| insert_sql("payments", PaymentRow::COLUMNS, "RETURNING id"));

pub(super) static INSERT_CERTIFICATE: LazyLock<String> = LazyLock::new(|| {
    insert_sql(
        "merchant_certificates",
        MerchantCertificateRow::COLUMNS,
        "RETURNING fingerprint",
    )
});

pub(super) const BUMP_MERCHANT_REVISION: &str =
    "UPDATE merchant_revision SET revision = revision + 1";

/// Gives the next cursors to committed events without one, in the order
/// they were written; run by one sequencer at a time (SQLite has one
/// writer; PostgreSQL takes the event-order lock first). Events are
/// written with their cursors; this is for those an older replica wrote
/// without one during a rolling upgrade.
pub(super) const SEQUENCE_EVENTS: &str = "WITH todo AS ( \
         SELECT write_no, ROW_NUMBER() OVER (ORDER BY write_no) AS n FROM events \
         WHERE seq IS NULL ORDER BY write_no LIMIT $1), \
     top AS (SELECT COALESCE(MAX(seq), 0) AS seq FROM events) \
     UPDATE events SET seq = top.seq + todo.n FROM todo, top \
     WHERE events.write_no = todo.write_no RETURNING events.seq";

/// A pending delivery for each event sequenced from `$1` whose merchant
/// has a notification endpoint, due at once (`$2`, now).
pub(super) const INSERT_DELIVERIES: &str = "INSERT INTO deliveries \
     (seq, merchant_id, resource_id, status, attempts, next_attempt_ms, created_ms) \
     SELECT e.seq, e.merchant_id, e.resource_id, 'PENDING', 0, $2, $2 \
     FROM events e JOIN merchant_endpoints m ON m.merchant_id = e.merchant_id \
     WHERE e.seq >= $1 ON CONFLICT (seq) DO NOTHING";

/// Claims what is due (`$1`, now) until `$2` (the lease), at most `$3`,
/// oldest first, none while an earlier event of its resource is pending;
/// `{lock}` is PostgreSQL's `FOR UPDATE ... SKIP LOCKED` (SQLite has one
/// writer). Meant to run as a stream: the pending deliveries read in order
/// from their own index, each checked by one probe of the by-resource
/// index, stopping at `$3` claimed — its cost is what it skips, not the
/// backlog (PostgreSQL is held to that plan: `PgStore::PINNED_PLAN`).
pub(super) fn claim_deliveries_sql(lock: &str) -> String {
    format!(
        "UPDATE deliveries SET attempts = attempts + 1, next_attempt_ms = $2 \
         WHERE seq IN (SELECT d.seq FROM deliveries d \
           WHERE d.status = 'PENDING' AND d.next_attempt_ms <= $1 \
           AND NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.status = 'PENDING' \
             AND p.merchant_id = d.merchant_id AND p.resource_id = d.resource_id \
             AND p.seq < d.seq) \
           ORDER BY d.seq LIMIT $3{lock}) \
         RETURNING seq, merchant_id, attempts"
    )
}

/// An attempt, kept; a late record of an attempt first marked abandoned
/// replaces that mark.
pub(super) const UPSERT_DELIVERY_ATTEMPT: &str = "INSERT INTO delivery_attempts \
     (seq, attempt, started_ms, latency_ms, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (seq, attempt) DO UPDATE SET started_ms = excluded.started_ms, \
     latency_ms = excluded.latency_ms, outcome = excluded.outcome, detail = excluded.detail";

pub(super) const SELECT_DELIVERY: &str = "SELECT d.seq, e.event_id, d.status, \
     d.next_attempt_ms, d.finished_ms FROM deliveries d JOIN events e ON e.seq = d.seq";

pub(super) const SELECT_PAYMENT_BY_KEY: &str =
    "SELECT * FROM payments WHERE merchant_id = $1 AND idempotency_key = $2";

macro_rules! impl_store {
    ($store:ty) => {
        use paybind_shared::{
            db::{classify, insert_sql, Backend, StoreError, StoreResult},
            ids::{BindingId, MerchantId, MerchantUserId, PaymentId, RefundId, SessionId},
            tls::CertFingerprint,
        };
        use paybind_shared::model::RefundStatus;
        use $crate::domain::model::{
            BindSession, Binding, Merchant, MerchantCertificate, MerchantStatus, Payment,
            PaymentState, Refund, SessionState,
        };
        use $crate::store::common::*;
        use $crate::domain::vault::Sealed;
        use $crate::domain::events::{Event, NewEvent, RevokedBy};
        use $crate::domain::deliveries::{
            AfterAttempt, AttemptRecord, ClaimedDelivery, Delivery,
            DeliveryState, NotifyEndpoint,
        };

        /// Fails a claimed delivery whose event is gone (kept 30 days) or
        /// that this build cannot read (`error`: a newer replica's, in a
        /// rolling upgrade): it fails alone, nothing else waits.
        async fn fail_unpushable(
            conn: &mut <Db as sqlx::Database>::Connection,
            seq: i64,
            error: Option<StoreError>,
            now_ms: i64,
        ) -> StoreResult<()> {
            if let Some(e) = error {
                tracing::warn!(error = %e, seq, "an event that cannot be read is not pushed");
            }
            sqlx::query("UPDATE deliveries SET status = 'FAILED', finished_ms = $2 WHERE seq = $1")
                .bind(seq)
                .bind(now_ms)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }
        use $crate::domain::my_bindings::ShopperLogin;
        use $crate::store::rows::*;
        use $crate::store::*;

        /// Records attempts one statement at a time, on `conn` (a
        /// transaction); whether each moved its delivery (a record of an
        /// attempt superseded meanwhile does not).
        async fn record_attempts_each(
            conn: &mut <Db as sqlx::Database>::Connection,
            records: &[AttemptRecord],
        ) -> StoreResult<Vec<bool>> {
            let mut moved = Vec::with_capacity(records.len());
            for AttemptRecord { seq, attempt, next, now_ms } in records {
                sqlx::query(UPSERT_DELIVERY_ATTEMPT)
                    .bind(seq)
                    .bind(i64::from(attempt.attempt))
                    .bind(attempt.started_ms)
                    .bind(attempt.latency_ms)
                    .bind(attempt_outcome::to_stored(attempt.outcome))
                    .bind(&attempt.detail)
                    .execute(&mut *conn)
                    .await?;
                let one = match next {
                    // Acknowledged is delivered, whichever attempt it was.
                    AfterAttempt::Delivered => sqlx::query(
                        "UPDATE deliveries SET status = 'DELIVERED', finished_ms = $2 \
                         WHERE seq = $1 AND status = 'PENDING'",
                    )
                    .bind(seq)
                    .bind(now_ms),
                    AfterAttempt::RetryAt(at_ms) => sqlx::query(
                        "UPDATE deliveries SET next_attempt_ms = $2 \
                         WHERE seq = $1 AND status = 'PENDING' AND attempts = $3",
                    )
                    .bind(seq)
                    .bind(*at_ms)
                    .bind(i64::from(attempt.attempt)),
                    AfterAttempt::GiveUp => sqlx::query(
                        "UPDATE deliveries SET status = 'FAILED', finished_ms = $2 \
                         WHERE seq = $1 AND status = 'PENDING' AND attempts = $3",
                    )
                    .bind(seq)
                    .bind(now_ms)
                    .bind(i64::from(attempt.attempt)),
                }
                .execute(&mut *conn)
                .await?
                .rows_affected()
                    == 1;
                moved.push(one);
            }
            Ok(moved)
        }

        /// Revokes an active binding on `conn` (a transaction), adding its
        /// event to `events` (written last, with `write_events`); the
        /// binding as it is after (`None` if there is none). One already
        /// revoked is returned as it is, with no event.
        async fn revoke_on(
            conn: &mut <Db as sqlx::Database>::Connection,
            events: &mut Vec<NewEvent>,
            merchant_id: &MerchantId,
            binding_id: &BindingId,
            by: RevokedBy,
            reason: &str,
            now_ms: i64,
        ) -> StoreResult<Option<Binding>> {
            let revoked = sqlx::query(
                // What only paying needed goes with the binding.
                "UPDATE bindings SET status = 'REVOKED', revoked_ms = $3, revoke_reason = $4, \
                 revoked_by = $5, pan_ct = NULL, pan_key_id = NULL, holder_name = NULL, \
                 id_number_ct = NULL, id_key_id = NULL, phone = NULL \
                 WHERE merchant_id = $1 AND id = $2 AND status = 'ACTIVE'",
            )
            .bind(merchant_id)
            .bind(binding_id)
            .bind(now_ms)
            .bind(reason)
            .bind(revoked_by::to_stored(by))
            .execute(&mut *conn)
            .await?
            .rows_affected();
            let binding = sqlx::query_as::<_, BindingRow>(&format!(
                "{} WHERE b.merchant_id = $1 AND b.id = $2",
                *SELECT_BINDINGS
            ))
            .bind(merchant_id)
            .bind(binding_id)
            .fetch_optional(&mut *conn)
            .await?
            .map(BindingRow::into_binding)
            .transpose()?;
            if let (1, Some(binding)) = (revoked, &binding) {
                events.push(NewEvent::binding_revoked(binding));
            }
            Ok(binding)
        }

        /// `sql` (`REVIVE_BINDING` or `REFRESH_BINDING`) with its binds.
        fn refresh_query<'q>(
            sql: &'q str,
            binding: &'q Binding,
            row: &'q BindingRow,
        ) -> sqlx::query::QueryAs<'q, Db, (String,), <Db as sqlx::Database>::Arguments<'q>> {
            sqlx::query_as(sql)
                .bind(&binding.merchant_id)
                .bind(&binding.merchant_user_id)
                .bind(&binding.card.fingerprint)
                .bind(row.exp_month)
                .bind(row.exp_year)
                .bind(&row.pan_ct)
                .bind(&row.pan_key_id)
                .bind(&row.holder_name)
                .bind(&row.id_number_ct)
                .bind(&row.id_key_id)
                .bind(&row.phone)
        }

        fn payments(rows: Vec<PaymentRow>) -> StoreResult<Vec<Payment>> {
            rows.into_iter().map(PaymentRow::into_payment).collect()
        }

        fn pending_charge((payment_id, owner, created_ms): (String, Option<i64>, i64)) -> PendingCharge {
            PendingCharge {
                payment_id: PaymentId::from_stored(payment_id),
                owner,
                created_ms,
            }
        }

        impl $store {
            /// Ends a change: its events written last (`write_events`: the
            /// event-order lock after every row lock), the commit, and the
            /// events counted once committed.
            async fn commit_with_events(
                &self,
                mut tx: sqlx::Transaction<'_, Db>,
                events: &[NewEvent],
                now_ms: i64,
            ) -> StoreResult<()> {
                write_events(&mut tx, events, now_ms).await?;
                tx.commit().await?;
                self.events_written
                    .fetch_add(events.len() as u64, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl Store for $store {
            fn events_written(&self) -> u64 {
                self.events_written.load(std::sync::atomic::Ordering::Relaxed)
            }

            fn backend(&self) -> Backend {
                Self::BACKEND
            }

            fn pool_use(&self) -> paybind_shared::metrics::PoolUse {
                self.pools_in_use()
            }

            fn instance(&self) -> i64 {
                self.instance
            }

            async fn owner_alive(&self, owner: Option<i64>) -> StoreResult<bool> {
                match owner {
                    None => Ok(false),
                    Some(owner) if owner == self.instance => Ok(true),
                    Some(owner) => self.other_owner_alive(owner).await,
                }
            }

            async fn pending_charges(&self, created_before_ms: i64, limit: i64) -> StoreResult<Vec<PendingCharge>> {
                let rows: Vec<(String, Option<i64>, i64)> = sqlx::query_as(
                    "SELECT payment_id, owner, created_ms FROM pending_charges \
                     WHERE created_ms < $1 ORDER BY created_ms LIMIT $2",
                )
                .bind(created_before_ms)
                .bind(limit)
                .fetch_all(self.writer())
                .await?;
                Ok(rows.into_iter().map(pending_charge).collect())
            }

            async fn pending_charge(&self, payment_id: &PaymentId) -> StoreResult<Option<PendingCharge>> {
                let row: Option<(String, Option<i64>, i64)> = sqlx::query_as(
                    "SELECT payment_id, owner, created_ms FROM pending_charges WHERE payment_id = $1",
                )
                .bind(payment_id)
                .fetch_optional(self.writer())
                .await?;
                Ok(row.map(pending_charge))
            }

            async fn claim_charge(&self, payment_id: &PaymentId, from: Option<i64>) -> StoreResult<bool> {
                let claimed: Option<(String,)> = sqlx::query_as(
                    "UPDATE pending_charges SET owner = $3 \
                     WHERE payment_id = $1 AND owner IS NOT DISTINCT FROM $2 RETURNING payment_id",
                )
                .bind(payment_id)
                .bind(from)
                .bind(self.instance)
                .fetch_optional(self.writer())
                .await?;
                Ok(claimed.is_some())
            }

            async fn forget_charge(&self, payment_id: &PaymentId) -> StoreResult<()> {
                sqlx::query("DELETE FROM pending_charges WHERE payment_id = $1")
                    .bind(payment_id)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn insert_merchant(
                &self,
                m: &Merchant,
                certificate: &MerchantCertificate,
                now_ms: i64,
            ) -> StoreResult<()> {
                let row = MerchantRow::from_merchant(m, now_ms)?;
                let sql = insert_sql("merchants", MerchantRow::COLUMNS, "RETURNING id");
                let mut tx = self.writer().begin().await?;
                row.bind_all(sqlx::query_as::<_, (String,)>(&sql))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(classify)?;
                MerchantCertificateRow::from_certificate(certificate)
                    .bind_all(sqlx::query_as::<_, (String,)>(&INSERT_CERTIFICATE))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(classify)?;
                sqlx::query(BUMP_MERCHANT_REVISION).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn certificate_holder(
                &self,
                fingerprint: &CertFingerprint,
            ) -> StoreResult<Option<(Merchant, MerchantCertificate)>> {
                let Some(certificate) = sqlx::query_as::<_, MerchantCertificateRow>(
                    "SELECT * FROM merchant_certificates WHERE fingerprint = $1",
                )
                .bind(fingerprint.to_hex())
                .fetch_optional(self.reader())
                .await?
                else {
                    return Ok(None);
                };
                let merchant =
                    sqlx::query_as::<_, MerchantRow>("SELECT * FROM merchants WHERE id = $1")
                        .bind(&certificate.merchant_id)
                        .fetch_one(self.reader())
                        .await?
                        .into_merchant()?;
                Ok(Some((merchant, certificate.into_certificate()?)))
            }

            async fn merchant_certificates(
                &self,
                merchant_id: &MerchantId,
            ) -> StoreResult<Vec<MerchantCertificate>> {
                sqlx::query_as::<_, MerchantCertificateRow>(
                    "SELECT * FROM merchant_certificates WHERE merchant_id = $1 \
                     ORDER BY added_ms DESC, fingerprint",
                )
                .bind(merchant_id)
                .fetch_all(self.reader())
                .await?
                .into_iter()
                .map(MerchantCertificateRow::into_certificate)
                .collect()
            }

            async fn set_merchant_status(
                &self,
                merchant_id: &MerchantId,
                status: MerchantStatus,
            ) -> StoreResult<bool> {
                let disabled_ms = match status {
                    MerchantStatus::Enabled => None,
                    MerchantStatus::Disabled { since_ms } => Some(since_ms),
                };
                let mut tx = self.writer().begin().await?;
                let changed = sqlx::query("UPDATE merchants SET disabled_ms = $1 WHERE id = $2")
                    .bind(disabled_ms)
                    .bind(merchant_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if changed == 1 {
                    sqlx::query(BUMP_MERCHANT_REVISION).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(changed == 1)
            }

            async fn rotate_certificate(
                &self,
                certificate: &MerchantCertificate,
                others_revoked_ms: i64,
            ) -> StoreResult<()> {
                let mut tx = self.writer().begin().await?;
                sqlx::query(
                    "UPDATE merchant_certificates SET revoked_ms = $1 \
                     WHERE merchant_id = $2 AND (revoked_ms IS NULL OR revoked_ms > $1)",
                )
                .bind(others_revoked_ms)
                .bind(&certificate.merchant_id)
                .execute(&mut *tx)
                .await?;
                MerchantCertificateRow::from_certificate(certificate)
                    .bind_all(sqlx::query_as::<_, (String,)>(&INSERT_CERTIFICATE))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(classify)?;
                sqlx::query(BUMP_MERCHANT_REVISION).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn revoke_certificate(
                &self,
                fingerprint: &CertFingerprint,
                at_ms: i64,
            ) -> StoreResult<bool> {
                let mut tx = self.writer().begin().await?;
                let changed = sqlx::query(
                    "UPDATE merchant_certificates SET revoked_ms = $1 \
                     WHERE fingerprint = $2 AND (revoked_ms IS NULL OR revoked_ms > $1)",
                )
                .bind(at_ms)
                .bind(fingerprint.to_hex())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed == 1 {
                    sqlx::query(BUMP_MERCHANT_REVISION).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(changed == 1)
            }

            async fn merchant_revision(&self) -> StoreResult<i64> {
                let (revision,): (i64,) =
                    sqlx::query_as("SELECT revision FROM merchant_revision")
                        .fetch_one(self.reader())
                        .await?;
                Ok(revision)
            }

            async fn get_merchant(&self, id: &MerchantId) -> StoreResult<Option<Merchant>> {
                sqlx::query_as::<_, MerchantRow>("SELECT * FROM merchants WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.reader())
                    .await?
                    .map(MerchantRow::into_merchant)
                    .transpose()
            }

            async fn list_merchants(&self) -> StoreResult<Vec<Merchant>> {
                sqlx::query_as::<_, MerchantRow>("SELECT * FROM merchants ORDER BY id")
                    .fetch_all(self.reader())
                    .await?
                    .into_iter()
                    .map(MerchantRow::into_merchant)
                    .collect()
            }

            async fn rekey_sealed_cards(
                &self,
                name: &str,
                rekey: &(dyn for<'r> Fn(SealedRow<'r>) -> anyhow::Result<Rekeyed> + Sync),
                unlink: &(dyn for<'r> Fn(&'r MerchantId, &'r str) -> String + Sync),
                now_ms: i64,
            ) -> StoreResult<Option<u64>> {
                let mut tx = self.writer().begin().await?;
                if Self::BACKEND == Backend::Postgres {
                    // One replica makes the pass; the others wait, then skip it.
                    sqlx::query("SELECT pg_advisory_xact_lock(3, 0)")
                        .execute(&mut *tx)
                        .await?;
                }
                let done: Option<(String,)> =
                    sqlx::query_as("SELECT name FROM maintenance WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await?;
                if done.is_some() {
                    return Ok(None);
                }
                type Stored = (String, String, String, String, String, Vec<u8>, Option<String>, Option<Vec<u8>>);
                let mut changed = 0;
                for (table, is_binding) in [("bindings", true), ("bind_sessions", false)] {
                    let rows: Vec<Stored> = sqlx::query_as(&format!(
                        "SELECT id, merchant_id, merchant_user_id, card_fingerprint, pan_key_id, \
                         pan_ct, id_key_id, id_number_ct FROM {table} \
                         WHERE pan_ct IS NOT NULL AND pan_key_id IS NOT NULL \
                         AND card_fingerprint IS NOT NULL"
                    ))
                    .fetch_all(&mut *tx)
                    .await?;
                    for (id, merchant_id, user_id, fingerprint, key_id, blob, id_key, id_blob) in rows {
                        let (merchant_id, user_id) = (
                            MerchantId::from_stored(merchant_id),
                            MerchantUserId::from_stored(user_id),
                        );
                        let fresh = rekey(SealedRow {
                            is_binding,
                            id: &id,
                            merchant_id: &merchant_id,
                            merchant_user_id: &user_id,
                            card_fingerprint: &fingerprint,
                            pan: Sealed { key_id, blob },
                            id_number: id_key
                                .zip(id_blob)
                                .map(|(key_id, blob)| Sealed { key_id, blob }),
                        })
                        .map_err(|e| StoreError::Corrupt(format!("{table} {id}: {e}")))?;
                        let (id_key, id_blob) = match fresh.id_number {
                            Some(s) => (Some(s.key_id), Some(s.blob)),
                            None => (None, None),
                        };
                        changed += sqlx::query(&format!(
                            "UPDATE {table} SET card_fingerprint = $1, pan_key_id = $2, pan_ct = $3, \
                             id_key_id = $4, id_number_ct = $5 WHERE id = $6"
                        ))
                        .bind(fresh.card_fingerprint)
                        .bind(fresh.pan.key_id)
                        .bind(fresh.pan.blob)
                        .bind(id_key)
                        .bind(id_blob)
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    }
                }
                for (table, key, filter) in [
                    ("bindings", "id", "pan_ct IS NULL"),
                    ("card_checks", "id", "TRUE"),
                ] {
                    let rows: Vec<(String, String, String)> = sqlx::query_as(&format!(
                        "SELECT CAST({key} AS TEXT), merchant_id, card_fingerprint FROM {table} \
                         WHERE {filter}"
                    ))
                    .fetch_all(&mut *tx)
                    .await?;
                    for (id, merchant_id, fingerprint) in rows {
                        let unlinked = unlink(&MerchantId::from_stored(merchant_id), &fingerprint);
                        changed += sqlx::query(&format!(
                            "UPDATE {table} SET card_fingerprint = $1 WHERE CAST({key} AS TEXT) = $2"
                        ))
                        .bind(unlinked)
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    }
                }
                sqlx::query("INSERT INTO maintenance (name, done_ms) VALUES ($1, $2)")
                    .bind(name)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Some(changed))
            }

            async fn purge(&self, cutoffs: &PurgeCutoffs) -> StoreResult<Purged> {
                // An unfinished session keeps nothing once expired; one in
                // CHARGING is left to recovery, which finishes it first.
                let sessions = sqlx::query(
                    "UPDATE bind_sessions SET \
                     status = CASE WHEN status = 'AWAITING_VERIFICATION' THEN 'OPEN' ELSE status END, \
                     version = version + 1, \
                     prefill_name = NULL, prefill_phone = NULL, shopper_name = NULL, \
                     id_number_ct = NULL, id_key_id = NULL, phone = NULL, pan_ct = NULL, \
                     pan_key_id = NULL, card_fingerprint = NULL, card_brand = NULL, \
                     card_last4 = NULL, exp_month = NULL, exp_year = NULL, otp_hash = NULL, \
                     otp_expires_ms = NULL, otp_sent_ms = NULL \
                     WHERE expires_ms < $1 AND status <> 'CHARGING' \
                     AND (prefill_name IS NOT NULL OR prefill_phone IS NOT NULL \
                          OR shopper_name IS NOT NULL OR pan_ct IS NOT NULL)",
                )
                .bind(cutoffs.sessions_expired_before_ms)
                .execute(self.writer())
                .await?
                .rows_affected();
                let card_checks = sqlx::query("DELETE FROM card_checks WHERE checked_ms < $1")
                    .bind(cutoffs.card_checks_before_ms)
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                let velocity_events = sqlx::query("DELETE FROM velocity_events WHERE at_ms < $1")
                    .bind(cutoffs.velocity_before_ms)
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                // Sequenced events only (one still without a cursor has not
                // been readable yet), and never the newest: the sequencer
                // counts on from it, so cursors are never given twice.
                // Each merchant's horizon moves with the deletion, in one
                // transaction, to the highest cursor actually deleted: a
                // cursor below it is refused, never silently read past.
                let mut tx = self.writer().begin().await?;
                let deleted: Vec<(String, i64)> = sqlx::query_as(
                    "DELETE FROM events WHERE occurred_ms < $1 AND seq IS NOT NULL \
                     AND seq < (SELECT MAX(seq) FROM events) RETURNING merchant_id, seq",
                )
                .bind(cutoffs.events_before_ms)
                .fetch_all(&mut *tx)
                .await?;
                let events = deleted.len() as u64;
                let mut horizons: std::collections::BTreeMap<String, i64> = Default::default();
                for (merchant_id, seq) in deleted {
                    let through = horizons.entry(merchant_id).or_insert(seq);
                    *through = (*through).max(seq);
                }
                for (merchant_id, through) in horizons {
                    sqlx::query(
                        "INSERT INTO event_horizons (merchant_id, purged_through) VALUES ($1, $2) \
                         ON CONFLICT (merchant_id) DO UPDATE SET purged_through = CASE \
                         WHEN excluded.purged_through > event_horizons.purged_through \
                         THEN excluded.purged_through ELSE event_horizons.purged_through END",
                    )
                    .bind(&merchant_id)
                    .bind(through)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                // Finished deliveries go with the events (their attempts first).
                sqlx::query(
                    "DELETE FROM delivery_attempts WHERE seq IN (SELECT seq FROM deliveries \
                     WHERE status <> 'PENDING' AND finished_ms < $1)",
                )
                .bind(cutoffs.events_before_ms)
                .execute(self.writer())
                .await?;
                sqlx::query("DELETE FROM deliveries WHERE status <> 'PENDING' AND finished_ms < $1")
                    .bind(cutoffs.events_before_ms)
                    .execute(self.writer())
                    .await?;
                let shopper_logins = sqlx::query("DELETE FROM shopper_logins WHERE expires_ms < $1")
                    .bind(cutoffs.shopper_logins_before_ms)
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                Ok(Purged {
                    sessions,
                    card_checks,
                    velocity_events,
                    events,
                    shopper_logins,
                })
            }

            async fn take_allowances(
                &self,
                allowances: &[Allowance],
                now_ms: i64,
            ) -> StoreResult<Result<(), UsedUp>> {
                let mut ordered: Vec<&Allowance> = allowances.iter().collect();
                // One lock order for every transaction: no deadlock.
                ordered.sort_by(|a, b| (a.counter, &a.key).cmp(&(b.counter, &b.key)));
                // The purge deletes aged rows too, in its own order: a
                // deadlock with it (or a dropped connection) is tried again.
                paybind_shared::db::retry_transient("velocity limits", 5, || async {
                    let mut tx = self.writer().begin().await?;
                    for a in &ordered {
                        let counter = velocity_counter::to_stored(a.counter);
                        if Self::BACKEND == Backend::Postgres {
                            // SQLite has one writer; PostgreSQL serialises
                            // the check-and-record of one key here.
                            // Class 1 of the two-key space: apart from the
                            // processes' own (one-key) owner locks.
                            sqlx::query("SELECT pg_advisory_xact_lock(1, hashtext($1))")
                                .bind(format!("velocity/{counter}/{}", a.key))
                                .execute(&mut *tx)
                                .await?;
                        }
                        let since = now_ms.saturating_sub(a.window_ms());
                        sqlx::query(
                            "DELETE FROM velocity_events WHERE counter = $1 AND key = $2 AND at_ms <= $3",
                        )
                        .bind(counter)
                        .bind(&a.key)
                        .bind(since)
                        .execute(&mut *tx)
                        .await?;
                        let (count, oldest): (i64, Option<i64>) = sqlx::query_as(
                            "SELECT COUNT(*), MIN(at_ms) FROM velocity_events \
                             WHERE counter = $1 AND key = $2 AND at_ms > $3",
                        )
                        .bind(counter)
                        .bind(&a.key)
                        .bind(since)
                        .fetch_one(&mut *tx)
                        .await?;
                        if count >= i64::from(a.limit) {
                            let frees_at = oldest.unwrap_or(now_ms).saturating_add(a.window_ms());
                            return Ok(Err(UsedUp {
                                counter: a.counter,
                                retry_after: std::time::Duration::from_millis(
                                    u64::try_from(frees_at.saturating_sub(now_ms)).unwrap_or(0),
                                ),
                            }));
                        }
                    }
                    for a in &ordered {
                        sqlx::query("INSERT INTO velocity_events (counter, key, at_ms) VALUES ($1, $2, $3)")
                            .bind(velocity_counter::to_stored(a.counter))
                            .bind(&a.key)
                            .bind(now_ms)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(Ok(()))
                })
                .await
            }

            async fn record_card_check(&self, check: &CardCheck) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO card_checks \
                     (merchant_id, session_id, card_fingerprint, outcome, checked_ms) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(check.merchant_id.as_str())
                .bind(check.session_id.as_str())
                .bind(&check.card_fingerprint)
                .bind(card_check_outcome(check.outcome))
                .bind(check.checked_ms)
                .execute(self.writer())
                .await
                .map_err(classify)?;
                Ok(())
            }

            async fn insert_session(&self, session: &BindSession) -> StoreResult<Inserted<BindSession>> {
                let row = SessionRow::from_session(session);
                let inserted: Option<SessionRow> = row
                    .bind_all(sqlx::query_as(&INSERT_SESSION))
                    .fetch_optional(self.writer())
                    .await
                    .map_err(classify)?;
                if let Some(row) = inserted {
                    return Ok(Inserted::New(row.into_session()?));
                }
                let existing: SessionRow = sqlx::query_as(
                    "SELECT * FROM bind_sessions WHERE merchant_id = $1 AND idempotency_key = $2",
                )
                .bind(&session.merchant_id)
                .bind(&session.idempotency_key)
                .fetch_one(self.writer())
                .await?;
                Ok(Inserted::Existing(existing.into_session()?))
            }

            async fn find_session(&self, session_id: &SessionId) -> StoreResult<Option<BindSession>> {
                sqlx::query_as::<_, SessionRow>("SELECT * FROM bind_sessions WHERE id = $1")
                    .bind(session_id)
                    .fetch_optional(self.reader())
                    .await?
                    .map(SessionRow::into_session)
                    .transpose()
            }

            async fn get_session(&self, merchant_id: &MerchantId, session_id: &SessionId) -> StoreResult<Option<BindSession>> {
                sqlx::query_as::<_, SessionRow>("SELECT * FROM bind_sessions WHERE merchant_id = $1 AND id = $2")
                    .bind(merchant_id)
                    .bind(session_id)
                    .fetch_optional(self.reader())
                    .await?
                    .map(SessionRow::into_session)
                    .transpose()
            }

            async fn apply_session_change(&self, change: SessionChange) -> StoreResult<BindSession> {
                let SessionChange {
                    mut session,
                    new_binding,
                    new_payment,
                    payment_final,
                } = change;
                let now = paybind_shared::clock::now_ms();
                let mut tx = self.writer().begin().await?;
                let mut binding_id = None;
                let mut binding_updated = false;
                if let Some(binding) = &new_binding {
                    let row = BindingRow::from_binding(binding);
                    // The same card bound again after it expired: that
                    // binding (and its token) comes back, with the new expiry.
                    let revived: Option<(String,)> = refresh_query(&REVIVE_BINDING, binding, &row)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(classify)?;
                    let inserted: Option<(String,)> = match revived {
                        Some(revived) => {
                            binding_updated = true;
                            Some(revived)
                        }
                        None => row
                            .bind_all(sqlx::query_as(&INSERT_BINDING))
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(classify)?,
                    };
                    let id = match inserted {
                        Some((id,)) => id,
                        None => {
                            // The user already has an active binding for this
                            // card: it is the binding, with what the shopper
                            // and the issuer just gave (a new expiry, the
                            // phone on file now, a fresh sealed copy).
                            let (id,) = refresh_query(&REFRESH_BINDING, binding, &row)
                                .fetch_one(&mut *tx)
                                .await?;
                            binding_updated = true;
                            id
                        }
                    };
                    let id = BindingId::from_stored(id);
                    if let SessionState::Completed { binding_id: named, .. } = &mut session.state {
                        *named = id.clone();
                    }
                    binding_id = Some(id);
                }
                if let Some(payment) = &new_payment {
                    let row = PaymentRow::from_payment(payment);
                    row.bind_all(sqlx::query_as::<_, (String,)>(&INSERT_PAYMENT))
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(classify)?;
                    // A new payment is PENDING: its charge is in flight, ours.
                    sqlx::query(
                        "INSERT INTO pending_charges (payment_id, owner, created_ms) VALUES ($1, $2, $3)",
                    )
                    .bind(&payment.id)
                    .bind(self.instance)
                    .bind(payment.created_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                if let Some(outcome) = &payment_final {
                    let (status, decline_reason, acquirer_ref) = state_columns(&outcome.state);
                    sqlx::query(
                        "UPDATE payments SET status = $2, decline_reason = $3, acquirer_ref = $4, \
                         updated_ms = $5, binding_id = COALESCE($6, binding_id) WHERE id = $1",
                    )
                    .bind(&outcome.payment_id)
                    .bind(status)
                    .bind(decline_reason)
                    .bind(acquirer_ref)
                    .bind(outcome.now_ms)
                    .bind(&binding_id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM pending_charges WHERE payment_id = $1")
                        .bind(&outcome.payment_id)
                        .execute(&mut *tx)
                        .await?;
                }
                let expected = session.version;
                session.version += 1;
                let row = SessionRow::from_session(&session);
                let updated: Option<(String,)> = row
                    .bind_all(sqlx::query_as(&UPDATE_SESSION))
                    .bind(expected)
                    .fetch_optional(&mut *tx)
                    .await?;
                if updated.is_none() {
                    tx.rollback().await?;
                    return Err(StoreError::VersionConflict);
                }
                // What the merchant is told, in the order it happened: the
                // binding, the payment, the session's end.
                let mut events = Vec::new();
                if let Some(id) = &binding_id {
                    let binding: BindingRow = sqlx::query_as(&format!("{} WHERE b.id = $1", *SELECT_BINDINGS))
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?;
                    events.push(NewEvent::binding_written(&binding.into_binding()?, binding_updated, now));
                }
                if let Some(outcome) = &payment_final {
                    let payment: PaymentRow = sqlx::query_as("SELECT * FROM payments WHERE id = $1")
                        .bind(&outcome.payment_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    events.extend(NewEvent::payment_settled(&payment.into_payment()?));
                }
                if matches!(session.state, SessionState::Completed { .. } | SessionState::Failed) {
                    events.extend(NewEvent::session_ended(&session, now));
                }
                self.commit_with_events(tx, &events, now).await?;
                Ok(session)
            }

            async fn get_binding(&self, merchant_id: &MerchantId, binding_id: &BindingId) -> StoreResult<Option<Binding>> {
                sqlx::query_as::<_, BindingRow>(&format!(
                    "{} WHERE b.merchant_id = $1 AND b.id = $2",
                    *SELECT_BINDINGS
                ))
                    .bind(merchant_id)
                    .bind(binding_id)
                    .fetch_optional(self.reader())
                    .await?
                    .map(BindingRow::into_binding)
                    .transpose()
            }

            async fn list_bindings(&self, q: &BindingQuery) -> StoreResult<Vec<Binding>> {
                let (after_ms, after_id) = match &q.after {
                    Some(c) => (Some(c.created_ms), Some(c.id.as_str())),
                    None => (None, None),
                };
                sqlx::query_as::<_, BindingRow>(&format!(
                    "{} WHERE b.merchant_id = $1 AND b.merchant_user_id = $2 \
                     AND ($3 OR b.status = 'ACTIVE') \
                     AND ($4 IS NULL OR b.created_ms < $4 OR (b.created_ms = $4 AND b.id < $5)) \
                     ORDER BY b.created_ms DESC, b.id DESC LIMIT $6",
                    *SELECT_BINDINGS
                ))
                .bind(&q.merchant_id)
                .bind(&q.merchant_user_id)
                .bind(q.include_revoked)
                .bind(after_ms)
                .bind(after_id)
                .bind(q.limit)
                .fetch_all(self.reader())
                .await?
                .into_iter()
                .map(BindingRow::into_binding)
                .collect()
            }

            async fn revoke_binding(
                &self,
                merchant_id: &MerchantId,
                binding_id: &BindingId,
                by: RevokedBy,
                reason: &str,
                now_ms: i64,
            ) -> StoreResult<Option<Binding>> {
                let mut tx = self.writer().begin().await?;
                let mut events = Vec::new();
                let binding =
                    revoke_on(&mut tx, &mut events, merchant_id, binding_id, by, reason, now_ms).await?;
                self.commit_with_events(tx, &events, now_ms).await?;
                Ok(binding)
            }

            async fn expire_bindings(&self, month: i64, limit: i64, now_ms: i64) -> StoreResult<Vec<Binding>> {
                let mut tx = self.writer().begin().await?;
                let due: Vec<(String, String)> = sqlx::query_as(
                    "SELECT merchant_id, id FROM bindings \
                     WHERE status = 'ACTIVE' AND exp_year * 12 + exp_month < $1 \
                     ORDER BY id LIMIT $2",
                )
                .bind(month)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
                let mut expired = Vec::with_capacity(due.len());
                let mut events = Vec::with_capacity(due.len());
                for (merchant_id, id) in due {
                    let binding = revoke_on(
                        &mut tx,
                        &mut events,
                        &MerchantId::from_stored(merchant_id),
                        &BindingId::from_stored(id),
                        RevokedBy::Expiry,
                        "the card expired",
                        now_ms,
                    )
                    .await?;
                    expired.extend(binding);
                }
                self.commit_with_events(tx, &events, now_ms).await?;
                Ok(expired)
            }

            async fn expire_sessions(&self, now_ms: i64, limit: i64) -> StoreResult<u64> {
                let mut tx = self.writer().begin().await?;
                // A session being charged is not expired: it must finish.
                let rows: Vec<SessionRow> = sqlx::query_as(
                    "UPDATE bind_sessions SET expiry_told = TRUE WHERE id IN ( \
                         SELECT id FROM bind_sessions WHERE expires_ms <= $1 \
                         AND status IN ('OPEN', 'AWAITING_VERIFICATION') AND NOT expiry_told \
                         ORDER BY expires_ms LIMIT $2) \
                     AND NOT expiry_told RETURNING *",
                )
                .bind(now_ms)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
                let mut events = Vec::with_capacity(rows.len());
                for row in rows {
                    events.extend(NewEvent::session_ended(&row.into_session()?, now_ms));
                }
                self.commit_with_events(tx, &events, now_ms).await?;
                Ok(events.len() as u64)
            }

            async fn insert_shopper_login(&self, login: &ShopperLogin) -> StoreResult<()> {
                ShopperLoginRow::from_login(login)
                    .bind_all(sqlx::query_as::<_, (String,)>(&insert_sql(
                        "shopper_logins",
                        ShopperLoginRow::COLUMNS,
                        "RETURNING id_hash",
                    )))
                    .fetch_one(self.writer())
                    .await
                    .map_err(classify)?;
                Ok(())
            }

            async fn shopper_login(&self, id_hash: &str) -> StoreResult<Option<ShopperLogin>> {
                sqlx::query_as::<_, ShopperLoginRow>("SELECT * FROM shopper_logins WHERE id_hash = $1")
                    .bind(id_hash)
                    .fetch_optional(self.writer())
                    .await?
                    .map(ShopperLoginRow::into_login)
                    .transpose()
            }

            async fn update_shopper_login(&self, login: &ShopperLogin, id_hash_was: &str, tries_left_was: u32) -> StoreResult<bool> {
                let row = ShopperLoginRow::from_login(login);
                let updated = sqlx::query(
                    "UPDATE shopper_logins SET status = $2, code_hash = $3, code_expires_ms = $4, \
                     tries_left = $5, expires_ms = $6, id_hash = $8 \
                     WHERE id_hash = $1 AND status = 'AWAITING_CODE' AND tries_left = $7",
                )
                .bind(id_hash_was)
                .bind(&row.status)
                .bind(&row.code_hash)
                .bind(row.code_expires_ms)
                .bind(row.tries_left)
                .bind(row.expires_ms)
                .bind(i64::from(tries_left_was))
                .bind(&row.id_hash)
                .execute(self.writer())
                .await?
                .rows_affected();
                Ok(updated == 1)
            }

            async fn delete_shopper_login(&self, id_hash: &str) -> StoreResult<()> {
                sqlx::query("DELETE FROM shopper_logins WHERE id_hash = $1")
                    .bind(id_hash)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn active_bindings_by_phone(&self, phone: &paybind_shared::person::Phone) -> StoreResult<Vec<Binding>> {
                sqlx::query_as::<_, BindingRow>(&format!(
                    "{} WHERE b.phone = $1 AND b.status = 'ACTIVE' ORDER BY b.created_ms DESC, b.id DESC LIMIT 200",
                    *SELECT_BINDINGS
                ))
                .bind(phone.e164())
                .fetch_all(self.reader())
                .await?
                .into_iter()
                .map(BindingRow::into_binding)
                .collect()
            }

            async fn list_events(
                &self,
                merchant_id: &MerchantId,
                after_seq: i64,
                limit: i64,
            ) -> StoreResult<Vec<Event>> {
                sqlx::query_as::<_, EventRow>(
                    "SELECT * FROM events WHERE merchant_id = $1 AND seq > $2 \
                     ORDER BY seq LIMIT $3",
                )
                .bind(merchant_id)
                .bind(after_seq)
                .bind(limit)
                .fetch_all(self.reader())
                .await?
                .into_iter()
                .map(EventRow::into_event)
                .collect()
            }

            async fn sequence_events(&self, limit: i64) -> StoreResult<u64> {
                // Most rounds find nothing: a read says so without taking
                // the write lock (SQLite) or the sequencer's lock (PostgreSQL).
                let waiting: Option<(i64,)> =
                    sqlx::query_as("SELECT write_no FROM events WHERE seq IS NULL LIMIT 1")
                        .fetch_optional(self.writer())
                        .await?;
                if waiting.is_none() {
                    return Ok(0);
                }
                let mut tx = self.writer().begin().await?;
                if !Self::sequencer_lock(&mut tx).await? {
                    return Ok(0);
                }
                // Writes first (SQLite: no snapshot read before the write lock).
                // Each of these three planned per execution, as the
                // outcome batch is: a generic plan cached while the tables
                // were small scans them whole once they have grown (the
                // deliveries' insert read every event ever written; the
                // claim hashed the whole backlog for each candidate).
                let given: Vec<(i64,)> = sqlx::query_as(SEQUENCE_EVENTS)
                    .bind(limit)
                    .persistent(false)
                    .fetch_all(&mut *tx)
                    .await?;
                if let Some(first) = given.iter().map(|(seq,)| *seq).min() {
                    sqlx::query(INSERT_DELIVERIES)
                        .bind(first)
                        .bind(paybind_shared::clock::now_ms())
                        .persistent(false)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(given.len() as u64)
            }

            async fn set_merchant_endpoint(
                &self,
                merchant_id: &MerchantId,
                endpoint: Option<&NotifyEndpoint>,
                now_ms: i64,
            ) -> StoreResult<bool> {
                // One statement, writing first: an operator's command from
                // another process never reads a snapshot a service's write
                // then invalidates (SQLite).
                match endpoint {
                    Some(e) => Ok(sqlx::query(
                        "INSERT INTO merchant_endpoints (merchant_id, url, server_name, updated_ms) \
                         SELECT id, $2, $3, $4 FROM merchants WHERE id = $1 \
                         ON CONFLICT (merchant_id) DO UPDATE SET \
                         url = excluded.url, server_name = excluded.server_name, \
                         updated_ms = excluded.updated_ms",
                    )
                    .bind(merchant_id)
                    .bind(&e.url)
                    .bind(&e.server_name)
                    .bind(now_ms)
                    .execute(self.writer())
                    .await?
                    .rows_affected()
                        == 1),
                    None => {
                        sqlx::query("DELETE FROM merchant_endpoints WHERE merchant_id = $1")
                            .bind(merchant_id)
                            .execute(self.writer())
                            .await?;
                        let known: Option<(String,)> =
                            sqlx::query_as("SELECT id FROM merchants WHERE id = $1")
                                .bind(merchant_id)
                                .fetch_optional(self.reader())
                                .await?;
                        Ok(known.is_some())
                    }
                }
            }

            async fn merchant_endpoint(
                &self,
                merchant_id: &MerchantId,
            ) -> StoreResult<Option<NotifyEndpoint>> {
                let row: Option<(String, String)> = sqlx::query_as(
                    "SELECT url, server_name FROM merchant_endpoints WHERE merchant_id = $1",
                )
                .bind(merchant_id)
                .fetch_optional(self.reader())
                .await?;
                Ok(row.map(|(url, server_name)| NotifyEndpoint { url, server_name }))
            }

            async fn claim_deliveries(
                &self,
                now_ms: i64,
                lease_until_ms: i64,
                limit: i64,
            ) -> StoreResult<Vec<ClaimedDelivery>> {
                if let Some(claimed) = self.claim_at_once(now_ms, lease_until_ms, limit).await? {
                    return Ok(claimed);
                }
                let mut tx = self.writer().begin().await?;
                let claimed: Vec<(i64, String, i64)> =
                    sqlx::query_as(&claim_deliveries_sql(Self::CLAIM_LOCKING))
                        .bind(now_ms)
                        .bind(lease_until_ms)
                        .bind(limit)
                        .persistent(false)
                        .fetch_all(&mut *tx)
                        .await?;
                // The claimed deliveries' events, in one read.
                let mut events: std::collections::HashMap<i64, EventRow> = Default::default();
                if !claimed.is_empty() {
                    let sql = format!(
                        "SELECT * FROM events WHERE seq IN ({})",
                        (1..=claimed.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
                    );
                    let mut read = sqlx::query_as::<_, EventRow>(&sql).persistent(false);
                    for (seq, _, _) in &claimed {
                        read = read.bind(*seq);
                    }
                    // A delivery's event has its cursor: the delivery is keyed by it.
                    events.extend(
                        read.fetch_all(&mut *tx)
                            .await?
                            .into_iter()
                            .filter_map(|e| Some((e.seq?, e))),
                    );
                }
                let mut endpoints: std::collections::HashMap<String, Option<NotifyEndpoint>> =
                    Default::default();
                let mut out = Vec::with_capacity(claimed.len());
                for (seq, merchant_id, attempts) in claimed {
                    if attempts > 1 {
                        // Claimed again while its last attempt has no record:
                        // the replica making it stopped before the answer.
                        sqlx::query(
                            "INSERT INTO delivery_attempts \
                             (seq, attempt, started_ms, latency_ms, outcome, detail) \
                             VALUES ($1, $2, $3, 0, 'ABANDONED', \
                             'the replica making this attempt stopped before the answer') \
                             ON CONFLICT (seq, attempt) DO NOTHING",
                        )
                        .bind(seq)
                        .bind(attempts - 1)
                        .bind(now_ms)
                        .execute(&mut *tx)
                        .await?;
                    }
                    let event = match events.remove(&seq).map(EventRow::into_event) {
                        Some(Ok(event)) => event,
                        gone_or_unreadable => {
                            fail_unpushable(&mut tx, seq, gone_or_unreadable.and_then(Result::err), now_ms)
                                .await?;
                            continue;
                        }
                    };
                    if !endpoints.contains_key(&merchant_id) {
                        let row: Option<(String, String)> = sqlx::query_as(
                            "SELECT url, server_name FROM merchant_endpoints WHERE merchant_id = $1",
                        )
                        .bind(&merchant_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                        endpoints.insert(
                            merchant_id.clone(),
                            row.map(|(url, server_name)| NotifyEndpoint { url, server_name }),
                        );
                    }
                    out.push(ClaimedDelivery {
                        event,
                        endpoint: endpoints.get(&merchant_id).cloned().flatten(),
                        merchant_id: MerchantId::from_stored(merchant_id),
                        attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
                    });
                }
                tx.commit().await?;
                Ok(out)
            }

            async fn release_deliveries(&self, seqs: &[i64], now_ms: i64) -> StoreResult<()> {
                if seqs.is_empty() {
                    return Ok(());
                }
                let sql = format!(
                    "UPDATE deliveries SET attempts = attempts - 1, next_attempt_ms = $1 \
                     WHERE status = 'PENDING' AND attempts > 0 AND seq IN ({})",
                    (2..=seqs.len() + 1).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
                );
                let mut release = sqlx::query(&sql).persistent(false).bind(now_ms);
                for seq in seqs {
                    release = release.bind(*seq);
                }
                release.execute(self.writer()).await?;
                Ok(())
            }

            async fn record_delivery_attempts(
                &self,
                records: &[AttemptRecord],
            ) -> StoreResult<Vec<bool>> {
                if let Some(moved) = self.record_attempts_at_once(records).await? {
                    return Ok(moved);
                }
                let mut tx = self.writer().begin().await?;
                let moved = record_attempts_each(&mut tx, records).await?;
                tx.commit().await?;
                Ok(moved)
            }

            async fn get_delivery(
                &self,
                merchant_id: &MerchantId,
                event_id: &str,
            ) -> StoreResult<Option<Delivery>> {
                let row: Option<DeliveryRow> = sqlx::query_as(&format!(
                    "{SELECT_DELIVERY} WHERE d.merchant_id = $1 AND e.event_id = $2"
                ))
                .bind(merchant_id)
                .bind(event_id)
                .fetch_optional(self.reader())
                .await?;
                let Some(row) = row else { return Ok(None) };
                let attempts: Vec<DeliveryAttemptRow> =
                    sqlx::query_as("SELECT * FROM delivery_attempts WHERE seq = $1")
                        .bind(row.seq)
                        .fetch_all(self.reader())
                        .await?;
                Ok(Some(row.into_delivery(attempts)?))
            }

            async fn list_deliveries(
                &self,
                merchant_id: &MerchantId,
                state: Option<DeliveryState>,
                after_seq: i64,
                limit: i64,
            ) -> StoreResult<Vec<Delivery>> {
                let rows: Vec<DeliveryRow> = sqlx::query_as(&format!(
                    "{SELECT_DELIVERY} WHERE d.merchant_id = $1 AND d.seq > $2 \
                     AND ($3 = '' OR d.status = $3) ORDER BY d.seq LIMIT $4"
                ))
                .bind(merchant_id)
                .bind(after_seq)
                .bind(state.map(delivery_state::to_stored).unwrap_or(""))
                .bind(limit)
                .fetch_all(self.reader())
                .await?;
                let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
                    return Ok(Vec::new());
                };
                let attempts: Vec<DeliveryAttemptRow> = sqlx::query_as(
                    "SELECT a.* FROM delivery_attempts a JOIN deliveries d ON d.seq = a.seq \
                     WHERE d.merchant_id = $1 AND a.seq >= $2 AND a.seq <= $3",
                )
                .bind(merchant_id)
                .bind(first.seq)
                .bind(last.seq)
                .fetch_all(self.reader())
                .await?;
                let mut by_seq: std::collections::HashMap<i64, Vec<DeliveryAttemptRow>> =
                    Default::default();
                for a in attempts {
                    by_seq.entry(a.seq).or_default().push(a);
                }
                rows.into_iter()
                    .map(|row| {
                        let attempts = by_seq.remove(&row.seq).unwrap_or_default();
                        row.into_delivery(attempts)
                    })
                    .collect()
            }

            async fn event_horizon(&self, merchant_id: &MerchantId) -> StoreResult<i64> {
                let through: Option<(i64,)> = sqlx::query_as(
                    "SELECT purged_through FROM event_horizons WHERE merchant_id = $1",
                )
                .bind(merchant_id)
                .fetch_optional(self.reader())
                .await?;
                Ok(through.map_or(0, |(t,)| t))
            }

            async fn delivery_backlog(&self) -> StoreResult<i64> {
                let (n,): (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM deliveries WHERE status = 'PENDING'")
                        .fetch_one(self.reader())
                        .await?;
                Ok(n)
            }

            async fn reserve_payments(&self, requests: &[ReservePayment]) -> StoreResult<Vec<ReserveOutcome>> {
                self.reserve_payments_impl(requests).await
            }

            async fn finalize_payments(&self, outcomes: &[PaymentOutcome]) -> StoreResult<Vec<Payment>> {
                payments(self.finalize_payments_impl(outcomes).await?)
            }

            async fn get_payment(&self, merchant_id: &MerchantId, payment_id: &PaymentId) -> StoreResult<Option<Payment>> {
                sqlx::query_as::<_, PaymentRow>("SELECT * FROM payments WHERE merchant_id = $1 AND id = $2")
                    .bind(merchant_id)
                    .bind(payment_id)
                    .fetch_optional(self.reader())
                    .await?
                    .map(PaymentRow::into_payment)
                    .transpose()
            }

            async fn payment_by_id(&self, payment_id: &PaymentId) -> StoreResult<Option<Payment>> {
                sqlx::query_as::<_, PaymentRow>("SELECT * FROM payments WHERE id = $1")
                    .bind(payment_id)
                    .fetch_optional(self.writer())
                    .await?
                    .map(PaymentRow::into_payment)
                    .transpose()
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
                    return Ok(RefundReserveOutcome::Existing(existing.into_refund()?));
                }
                let payment: Option<PaymentRow> =
                    sqlx::query_as("SELECT * FROM payments WHERE merchant_id = $1 AND id = $2")
                        .bind(&r.merchant_id)
                        .bind(&r.payment_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(payment) = payment.map(PaymentRow::into_payment).transpose()? else {
                    return Ok(RefundReserveOutcome::PaymentNotFound);
                };
                if !matches!(payment.state, PaymentState::Succeeded { .. }) {
                    return Ok(RefundReserveOutcome::NotRefundable);
                }
                if payment.amount.currency() != r.amount.currency() {
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
                .bind(r.amount.amount_minor())
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
                let pending = RefundRow::from_refund(&Refund {
                    id: r.refund_id.clone(),
                    merchant_id: r.merchant_id.clone(),
                    payment_id: r.payment_id.clone(),
                    amount: r.amount,
                    status: RefundStatus::Pending,
                    reason: r.reason.clone(),
                    idempotency_key: r.idempotency_key.clone(),
                    request_hash: r.request_hash.clone(),
                    created_ms: r.now_ms,
                    updated_ms: r.now_ms,
                });
                let refund: Option<RefundRow> = pending
                    .bind_all(sqlx::query_as(&INSERT_REFUND))
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
                    return Ok(RefundReserveOutcome::Existing(existing.into_refund()?));
                };
                let reserved = RefundReserveOutcome::Reserved {
                    refund: refund.into_refund()?,
                    payment: payment.into_payment()?,
                };
                tx.commit().await?;
                Ok(reserved)
            }

            async fn finalize_refund(&self, refund_id: &RefundId, succeeded: bool, now_ms: i64) -> StoreResult<(Refund, Payment)> {
                let mut tx = self.writer().begin().await?;
                let status = refund_status::to_stored(if succeeded {
                    RefundStatus::Succeeded
                } else {
                    RefundStatus::Failed
                });
                let updated: Option<RefundRow> = sqlx::query_as(
                    "UPDATE refunds SET status = $2, updated_ms = $3 WHERE id = $1 AND status = 'PENDING' RETURNING *",
                )
                .bind(refund_id)
                .bind(status)
                .bind(now_ms)
                .fetch_optional(&mut *tx)
                .await?;
                let written = updated.is_some();
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
                let refund = refund.into_refund()?;
                let events: Vec<NewEvent> = (succeeded && written)
                    .then(|| NewEvent::refund_succeeded(&refund))
                    .into_iter()
                    .collect();
                self.commit_with_events(tx, &events, now_ms).await?;
                Ok((refund, payment.into_payment()?))
            }
        }
    };
}

pub(super) use impl_store;
