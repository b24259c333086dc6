//! Pushing the feed: each event is delivered to its merchant's registered
//! notification endpoint (the merchant's `NotificationService`), at least
//! once, in order per resource, with retries on a schedule, and every
//! attempt kept.
//!
//! A delivery is made when its event gets a cursor, if its merchant has an
//! endpoint then (written with the event, in the change's transaction), so
//! none is lost: the event and the delivery outlive any crash. Workers
//! claim due deliveries with a lease (`next_attempt_ms` moved past the
//! attempt's deadline, under `FOR UPDATE SKIP LOCKED` on PostgreSQL): no
//! two replicas make the same attempt, and an attempt whose replica died is
//! made again once the lease runs out. An event is not claimed while an
//! earlier event of the same resource is pending, so a merchant never gets
//! a resource's changes out of order (a given-up one no longer holds the
//! next back), and a claim never holds two events of one resource: what a
//! round claims for one merchant is pushed in one call (`NotifyBatch`, where
//! the merchant takes batches), each event's attempt recorded on its own.
use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use paybind_shared::{batch::Batcher, clock::now_ms, db::StoreError, ids::MerchantId};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{
    error::{DomainError, DomainResult},
    events::Event,
    merchants::Merchant,
    metrics::PaymentMetrics,
    Services,
};
use crate::store::Store;

/// Where a merchant takes its notifications: a gRPC server over mTLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyEndpoint {
    /// `https://host:port`.
    pub url: String,
    /// The name (DNS SAN) its server certificate must carry.
    pub server_name: String,
}

impl NotifyEndpoint {
    /// Checks an endpoint as an operator gives it: an `https://host[:port]`
    /// URL with no path, and a server name (the URL's host if not given).
    pub fn parse(url: &str, server_name: Option<&str>) -> anyhow::Result<Self> {
        let parsed = Url::parse(url).map_err(|e| anyhow::anyhow!("notify URL {url:?}: {e}"))?;
        if parsed.scheme() != "https" {
            anyhow::bail!("notify URL {url:?} must be https:// (notifications go over mTLS)");
        }
        let Some(host) = parsed.host_str() else {
            anyhow::bail!("notify URL {url:?} has no host");
        };
        if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
            anyhow::bail!("notify URL {url:?} is scheme://host:port, with no path");
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            anyhow::bail!("notify URL {url:?} must not carry a user name or password");
        }
        let server_name = server_name.unwrap_or(host).trim();
        if server_name.is_empty() || server_name.len() > 253 {
            anyhow::bail!("the notify server name must be 1 to 253 characters");
        }
        Ok(Self {
            url: parsed.as_str().trim_end_matches('/').to_owned(),
            server_name: server_name.to_owned(),
        })
    }
}

/// Where pushing one event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Due at `next_attempt_ms` (or being attempted until then).
    Pending {
        next_attempt_ms: i64,
    },
    Delivered {
        at_ms: i64,
    },
    /// The schedule was used up.
    Failed {
        at_ms: i64,
    },
}

/// Which deliveries a listing wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The endpoint answered OK.
    Acknowledged,
    /// It answered with an error status.
    Refused,
    /// No connection, or it broke before an answer.
    Unreachable,
    /// No answer within the deadline.
    TimedOut,
    /// The merchant has no endpoint any more.
    NoEndpoint,
    /// The replica making it stopped before the answer.
    Abandoned,
}

/// One attempt, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// 1 for the first.
    pub attempt: u32,
    pub started_ms: i64,
    pub latency_ms: i64,
    pub outcome: AttemptOutcome,
    /// What the endpoint answered, or the transport error; no event data.
    pub detail: String,
}

/// An event's delivery with its attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub event_id: String,
    /// The event's cursor.
    pub seq: i64,
    pub status: DeliveryStatus,
    pub attempts: Vec<DeliveryAttempt>,
}

/// A delivery a worker claimed: the event, the attempt it is making, and
/// where to (`None`: the merchant's endpoint was removed).
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub event: Event,
    pub merchant_id: MerchantId,
    pub attempt: u32,
    pub endpoint: Option<NotifyEndpoint>,
}

/// An attempt to record, and what becomes of its delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub seq: i64,
    pub attempt: DeliveryAttempt,
    pub next: AfterAttempt,
    pub now_ms: i64,
}

/// What a worker records after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterAttempt {
    Delivered,
    RetryAt(i64),
    GiveUp,
}

/// An attempt that did not end in an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyFailure {
    pub outcome: AttemptOutcome,
    pub detail: String,
}

/// Calls a merchant's `NotificationService` (the gRPC client in `grpc/`).
#[async_trait]
pub trait Notifier: Send + Sync {
    /// One attempt, bounded by `deadline`.
    async fn notify(
        &self,
        endpoint: &NotifyEndpoint,
        event: &Event,
        attempt: u32,
        deadline: Duration,
    ) -> Result<(), NotifyFailure>;

    /// One attempt at each of several events of one merchant (each of
    /// another resource: a claim never holds two of one resource), in one
    /// call where the endpoint takes batches; one answer per event, in
    /// order.
    async fn notify_many(
        &self,
        endpoint: &NotifyEndpoint,
        notifications: &[(&Event, u32)],
        deadline: Duration,
    ) -> Vec<Result<(), NotifyFailure>>;
}

/// The retry schedule and the attempts' deadline (`[notifications]`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverySettings {
    /// The wait after each failed attempt: attempt 1 is made at once, attempt
    /// n+1 this long after attempt n failed. Once they are used up, the
    /// next failure gives the delivery up (FAILED).
    pub retry_delays_secs: Vec<u64>,
    /// The deadline of one attempt.
    pub attempt_timeout_ms: u64,
    /// Pushes made at once by one replica (never two of one resource): one
    /// per merchant with events due, each a batch or a few single calls.
    pub concurrency: usize,
    /// The CA of the merchants' server certificates (PEM); payment-svc's
    /// `tls.ca_cert` if unset.
    pub ca_cert: Option<std::path::PathBuf>,
}

/// 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 6 h, 8 h, 8 h: twelve
/// attempts over about 30 hours.
pub const DEFAULT_RETRY_DELAYS_SECS: [u64; 11] = [
    5, 30, 120, 600, 1800, 3600, 7200, 14_400, 21_600, 28_800, 28_800,
];

/// The longest wait between two attempts.
pub const MAX_WAIT_SECS: u64 = 7 * 24 * 3600;

/// Sandbox and production try for at least this long before giving up.
pub const MIN_RETRY_WINDOW_SECS: u64 = 24 * 3600;

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            retry_delays_secs: DEFAULT_RETRY_DELAYS_SECS.to_vec(),
            attempt_timeout_ms: 5000,
            concurrency: 8,
            ca_cert: None,
        }
    }
}

impl DeliverySettings {
    /// `hardened`: sandbox and production, which must keep trying for a
    /// day (development and tests may shorten the schedule).
    pub fn validate(&self, hardened: bool) -> anyhow::Result<()> {
        if !(100..=60_000).contains(&self.attempt_timeout_ms) {
            anyhow::bail!("notifications.attempt_timeout_ms must be between 100 and 60000");
        }
        if !(1..=64).contains(&self.concurrency) {
            anyhow::bail!("notifications.concurrency must be between 1 and 64");
        }
        if self.retry_delays_secs.len() > 100 {
            anyhow::bail!("notifications.retry_delays_secs may list at most 100 waits");
        }
        if self
            .retry_delays_secs
            .iter()
            .any(|wait| *wait > MAX_WAIT_SECS)
        {
            anyhow::bail!(
                "notifications.retry_delays_secs: each wait is at most 7 days ({MAX_WAIT_SECS} s)"
            );
        }
        let window: u64 = self.retry_delays_secs.iter().sum();
        if hardened && window < MIN_RETRY_WINDOW_SECS {
            anyhow::bail!(
                "notifications.retry_delays_secs must add up to at least 24 hours ({MIN_RETRY_WINDOW_SECS} s), not {window} s"
            );
        }
        Ok(())
    }

    /// What to record after attempt `attempt` (1-based) failed at `now_ms`.
    pub fn after_failure(&self, attempt: u32, now_ms: i64) -> AfterAttempt {
        let index = (attempt as usize).saturating_sub(1);
        match self.retry_delays_secs.get(index) {
            Some(wait) => {
                let wait_ms = i64::try_from(*wait)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1000);
                AfterAttempt::RetryAt(now_ms.saturating_add(wait_ms))
            }
            None => AfterAttempt::GiveUp,
        }
    }

    fn attempt_timeout(&self) -> Duration {
        Duration::from_millis(self.attempt_timeout_ms)
    }

    /// How long a claim keeps other replicas off an attempt: twice its
    /// deadline and a second, a margin for recording it.
    fn lease(&self) -> Duration {
        self.attempt_timeout() * 2 + Duration::from_secs(1)
    }
}

impl Services {
    /// How pushing one of the merchant's events went.
    pub async fn get_delivery(
        &self,
        merchant: &Merchant,
        event_id: &str,
    ) -> DomainResult<Delivery> {
        self.store
            .get_delivery(&merchant.id, event_id)
            .await?
            .ok_or(DomainError::DeliveryNotFound)
    }

    /// The merchant's deliveries after the event cursor `after_seq`.
    pub async fn list_deliveries(
        &self,
        merchant: &Merchant,
        state: Option<DeliveryState>,
        after_seq: i64,
        limit: i64,
    ) -> DomainResult<Vec<Delivery>> {
        Ok(self
            .store
            .list_deliveries(&merchant.id, state, after_seq, limit)
            .await?)
    }
}

/// Deliveries claimed per round, at most.
const CLAIM_BATCH: usize = 64;
/// How often a worker looks for due deliveries when nothing woke it.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// How often the backlog gauge is read.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);
/// The least time between two claims: under load, the events written
/// meanwhile are claimed (and pushed, per merchant) together instead of
/// one claim and one call each; a quiet system claims at once.
const CLAIM_GATHER: Duration = Duration::from_millis(5);

/// The delivery worker of one replica.
pub struct Deliverer {
    pub store: Arc<dyn Store>,
    pub notifier: Arc<dyn Notifier>,
    pub settings: DeliverySettings,
    pub metrics: PaymentMetrics,
    /// Moves when events got cursors (and so, perhaps, deliveries).
    pub wake: tokio::sync::watch::Receiver<u64>,
}

impl Deliverer {
    /// Delivers until the task is dropped. Each round claims what is due
    /// and pushes it merchant by merchant: one push per merchant (its
    /// events in one batch; or one call per event, a few at a time, to a
    /// merchant that takes no batches), up to `concurrency` pushes at once,
    /// each as a task of its own: a slow endpoint holds up its own pushes,
    /// never the others' (a free slot is filled at once). A merchant's
    /// events for which no slot is free are given back, due at once.
    pub async fn deliver_forever(self) {
        let Self {
            store,
            notifier,
            settings,
            metrics,
            mut wake,
        } = self;
        let record_store = store.clone();
        let records = Batcher::spawn(2, move |records: Vec<AttemptRecord>| {
            let store = record_store.clone();
            async move {
                store
                    .record_delivery_attempts(&records)
                    .await
                    .map_err(Arc::new)
            }
        });
        let attempts = Arc::new(Attempts {
            store,
            notifier,
            settings,
            metrics,
            records,
        });
        let slots = Arc::new(tokio::sync::Semaphore::new(attempts.settings.concurrency));
        let finished = Arc::new(tokio::sync::Notify::new());
        let mut backlog_read = tokio::time::Instant::now() - BACKLOG_EVERY;
        let mut last_claim = tokio::time::Instant::now() - CLAIM_GATHER;
        loop {
            let mut more = false;
            if slots.available_permits() > 0 {
                tokio::time::sleep_until(last_claim + CLAIM_GATHER).await;
                last_claim = tokio::time::Instant::now();
                match attempts.claim(CLAIM_BATCH).await {
                    Ok(due) => {
                        let claimed = due.len();
                        let mut released = Vec::new();
                        for push in Push::by_merchant(due, attempts.max_attempts()) {
                            let Ok(slot) = slots.clone().try_acquire_owned() else {
                                released.extend(push.seqs());
                                continue;
                            };
                            let attempts = attempts.clone();
                            let finished = finished.clone();
                            tokio::spawn(async move {
                                attempts.push(push).await;
                                drop(slot);
                                finished.notify_one();
                            });
                        }
                        if !released.is_empty() {
                            if let Err(e) =
                                attempts.store.release_deliveries(&released, now_ms()).await
                            {
                                // Their lease runs out and they are claimed again.
                                tracing::warn!(error = %e, "could not give back claimed deliveries");
                            }
                        }
                        // As many were due as a claim takes: perhaps more.
                        more = claimed == CLAIM_BATCH && released.is_empty();
                    }
                    Err(e) => tracing::warn!(error = %e, "could not claim deliveries"),
                }
            }
            if backlog_read.elapsed() >= BACKLOG_EVERY {
                backlog_read = tokio::time::Instant::now();
                if let Ok(n) = attempts.store.delivery_backlog().await {
                    attempts.metrics.delivery_backlog(n);
                }
            }
            if more {
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(POLL_EVERY) => {}
                () = finished.notified() => {}
                changed = wake.changed() => {
                    if changed.is_err() {
                        // The sequencer is gone: the service is stopping.
                        tokio::time::sleep(POLL_EVERY).await;
                    }
                }
            }
        }
    }
}

/// One round's deliveries to one merchant, pushed in one call.
struct Push {
    endpoint: Option<NotifyEndpoint>,
    claims: Vec<ClaimedDelivery>,
}

impl Push {
    /// A round's claims, grouped by merchant in the order of their first
    /// event. Deliveries whose attempts were all used up (cut off by
    /// replicas stopping before the answer) go in pushes of their own, with
    /// no endpoint: they are given up, not tried.
    fn by_merchant(claims: Vec<ClaimedDelivery>, max_attempts: u32) -> Vec<Push> {
        let mut pushes: Vec<Push> = Vec::new();
        for claim in claims {
            if claim.attempt > max_attempts {
                pushes.push(Push {
                    endpoint: None,
                    claims: vec![claim],
                });
                continue;
            }
            match pushes.iter_mut().find(|p| {
                p.claims[0].attempt <= max_attempts && p.claims[0].merchant_id == claim.merchant_id
            }) {
                Some(push) => push.claims.push(claim),
                None => pushes.push(Push {
                    endpoint: claim.endpoint.clone(),
                    claims: vec![claim],
                }),
            }
        }
        pushes
    }

    fn seqs(&self) -> impl Iterator<Item = i64> + '_ {
        self.claims.iter().map(|c| c.event.seq)
    }
}

/// What each attempt needs, shared by the attempts in flight.
struct Attempts {
    store: Arc<dyn Store>,
    notifier: Arc<dyn Notifier>,
    settings: DeliverySettings,
    metrics: PaymentMetrics,
    /// Attempts' records, written together (one commit for the attempts
    /// that finished meanwhile).
    records: Batcher<AttemptRecord, bool, Arc<StoreError>>,
}

impl Attempts {
    /// Claims up to `room` due deliveries.
    async fn claim(&self, room: usize) -> anyhow::Result<Vec<ClaimedDelivery>> {
        let now = now_ms();
        let lease_ms = i64::try_from(self.settings.lease().as_millis()).unwrap_or(i64::MAX / 2);
        let limit = i64::try_from(room).unwrap_or(CLAIM_BATCH as i64);
        Ok(self
            .store
            .claim_deliveries(now, now + lease_ms, limit)
            .await?)
    }

    /// The attempts a delivery gets: the first and one after each wait.
    fn max_attempts(&self) -> u32 {
        u32::try_from(self.settings.retry_delays_secs.len()).unwrap_or(u32::MAX - 1) + 1
    }

    /// Makes one attempt at each delivery of `push` and records them.
    async fn push(&self, push: Push) {
        let started_ms = now_ms();
        if let [claim] = push.claims.as_slice() {
            if claim.attempt > self.max_attempts() {
                // Its attempts were all cut off (replicas stopping before
                // the answer): given up, not tried forever.
                tracing::warn!(event_id = %claim.event.id, merchant_id = %claim.merchant_id, "notification given up: its attempts were cut off");
                let record = DeliveryAttempt {
                    attempt: claim.attempt,
                    started_ms,
                    latency_ms: 0,
                    outcome: AttemptOutcome::Abandoned,
                    detail: "not made: the schedule's attempts were used up".into(),
                };
                self.record(claim, record, AfterAttempt::GiveUp).await;
                return;
            }
        }
        let started = std::time::Instant::now();
        let results: Vec<Result<(), NotifyFailure>> = match &push.endpoint {
            Some(endpoint) => {
                let notifications: Vec<(&Event, u32)> =
                    push.claims.iter().map(|c| (&c.event, c.attempt)).collect();
                self.notifier
                    .notify_many(endpoint, &notifications, self.settings.attempt_timeout())
                    .await
            }
            None => vec![
                Err(NotifyFailure {
                    outcome: AttemptOutcome::NoEndpoint,
                    detail: "the merchant has no notification endpoint registered".into(),
                });
                push.claims.len()
            ],
        };
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let records = push.claims.iter().zip(results).map(|(claim, result)| {
            let (outcome, detail, next) = match result {
                Ok(()) => (
                    AttemptOutcome::Acknowledged,
                    String::new(),
                    AfterAttempt::Delivered,
                ),
                Err(failure) => (
                    failure.outcome,
                    failure.detail,
                    self.settings.after_failure(claim.attempt, now_ms()),
                ),
            };
            self.metrics.delivery_attempt(outcome);
            let record = DeliveryAttempt {
                attempt: claim.attempt,
                started_ms,
                latency_ms,
                outcome,
                detail,
            };
            match &next {
                AfterAttempt::GiveUp => tracing::warn!(
                    event_id = %claim.event.id, merchant_id = %claim.merchant_id,
                    attempts = claim.attempt, outcome = ?outcome,
                    "notification given up: every attempt of the schedule failed"
                ),
                AfterAttempt::RetryAt(_) => tracing::info!(
                    event_id = %claim.event.id, merchant_id = %claim.merchant_id,
                    attempt = claim.attempt, outcome = ?outcome, detail = %record.detail,
                    "notification attempt failed; tried again later"
                ),
                AfterAttempt::Delivered => tracing::debug!(
                    event_id = %claim.event.id, merchant_id = %claim.merchant_id,
                    attempt = claim.attempt, latency_ms, "notification delivered"
                ),
            }
            self.record(claim, record, next)
        });
        // Submitted together: they are written in one batch.
        futures::future::join_all(records).await;
    }

    async fn record(&self, claim: &ClaimedDelivery, attempt: DeliveryAttempt, next: AfterAttempt) {
        if let Err(e) = self
            .records
            .submit(AttemptRecord {
                seq: claim.event.seq,
                attempt,
                next,
                now_ms: now_ms(),
            })
            .await
        {
            // The lease runs out and the event is tried again: at least once.
            tracing::warn!(error = %e, event_id = %claim.event.id, "could not record a notification attempt");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_keeps_trying_for_more_than_a_day_then_gives_up() {
        let s = DeliverySettings::default();
        s.validate(true).expect("valid in production");
        let window: u64 = s.retry_delays_secs.iter().sum();
        assert!(window >= MIN_RETRY_WINDOW_SECS, "{window}");
        assert_eq!(s.after_failure(1, 1_000), AfterAttempt::RetryAt(6_000));
        assert_eq!(s.after_failure(2, 1_000), AfterAttempt::RetryAt(31_000));
        assert_eq!(s.after_failure(11, 0), AfterAttempt::RetryAt(28_800_000));
        assert_eq!(s.after_failure(12, 0), AfterAttempt::GiveUp);
    }

    #[test]
    fn a_short_schedule_is_for_development_only() {
        let s = DeliverySettings {
            retry_delays_secs: vec![1, 1],
            ..DeliverySettings::default()
        };
        s.validate(false).expect("development may shorten it");
        assert!(s.validate(true).is_err());
        assert_eq!(s.after_failure(3, 0), AfterAttempt::GiveUp);
    }

    #[test]
    fn an_endpoint_is_an_https_origin() {
        let e = NotifyEndpoint::parse("https://shop.example:50052", None).expect("ok");
        assert_eq!(e.url, "https://shop.example:50052");
        assert_eq!(e.server_name, "shop.example");
        let named =
            NotifyEndpoint::parse("https://10.0.0.7:50052/", Some("merchant-svc")).expect("ok");
        assert_eq!(named.server_name, "merchant-svc");
        assert_eq!(named.url, "https://10.0.0.7:50052");
        for bad in [
            "http://shop.example:50052",
            "https://shop.example/notify",
            "https://user:pw@shop.example",
            "shop.example:50052",
        ] {
            assert!(NotifyEndpoint::parse(bad, None).is_err(), "{bad}");
        }
    }
}
