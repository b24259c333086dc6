//! The event feed: what a merchant is told, and in what order.
//!
//! Every change a merchant must know — a binding created, updated or ended,
//! a payment's outcome, a refund, a bind session's end — becomes an
//! [`Event`], written by the store in the same transaction as the change
//! (an outbox). Each carries the resource's state after the change and a
//! `version` that grows with every change of that resource, so a consumer
//! that sees an event twice, or an older one after a newer one, can tell.
//!
//! Merchants read the feed by cursor (`ListEvents`) or follow it live
//! (`StreamEvents`). The store gives each event its cursor as it writes it,
//! last in the change's transaction, under a lock held to commit (SQLite's
//! one writer; PostgreSQL's event-order lock): transactions commit in
//! cursor order, so a merchant that has read up to a cursor never finds an
//! earlier event appear later. [`Services::sequence_events_forever`] gives
//! cursors to any event written without one (by an older replica during a
//! rolling upgrade).
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use paybind_shared::{
    ids::{BindingId, EventId, MerchantId, MerchantUserId, OrderId, PaymentId, SessionId},
    model::{BindingStatus, SessionStatus},
};

use super::{
    error::{DomainError, DomainResult},
    merchants::Merchant,
    model::{BindSession, Binding, CardOnFile, Limits, Payment, PaymentState, Refund},
    Services,
};

/// What happened. `Binding*` events carry a [`BindingSnapshot`], `Payment*`
/// a [`Payment`], `RefundSucceeded` a [`Refund`], `BindSession*` a
/// [`SessionSnapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    BindingCreated,
    /// The same card was bound again by the same user: new expiry or holder data.
    BindingUpdated,
    BindingRevoked,
    PaymentSucceeded,
    PaymentDeclined,
    RefundSucceeded,
    BindSessionCompleted,
    BindSessionFailed,
    BindSessionExpired,
}

/// Who ended a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevokedBy {
    /// The merchant, with `Unbind`.
    Merchant,
    /// The shopper, at the payment institution.
    Shopper,
    /// Its card expired.
    Expiry,
    /// An operator of the payment institution.
    Operator,
}

/// A binding as the feed shows it: no card number, no holder data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingSnapshot {
    pub id: BindingId,
    pub merchant_user_id: MerchantUserId,
    pub status: BindingStatus,
    pub card: CardOnFile,
    pub limits: Limits,
    pub created_ms: i64,
    pub revoked: Option<RevokedSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSnapshot {
    pub at_ms: i64,
    pub by: RevokedBy,
    pub reason: String,
}

impl BindingSnapshot {
    pub fn of(binding: &Binding) -> Self {
        Self {
            id: binding.id.clone(),
            merchant_user_id: binding.merchant_user_id.clone(),
            status: binding.status(),
            card: binding.card.clone(),
            limits: binding.limits,
            created_ms: binding.created_ms,
            revoked: binding.revocation().map(|r| RevokedSnapshot {
                at_ms: r.at_ms,
                by: r.by,
                reason: r.reason.clone(),
            }),
        }
    }
}

/// A bind session's end, as the feed shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSnapshot {
    pub id: SessionId,
    pub merchant_user_id: MerchantUserId,
    pub status: SessionStatus,
    /// BindAndPay: the order it pays.
    pub order_id: Option<OrderId>,
    pub binding_id: Option<BindingId>,
    pub payment_id: Option<PaymentId>,
}

impl SessionSnapshot {
    pub fn of(session: &BindSession, status: SessionStatus) -> Self {
        Self {
            id: session.id.clone(),
            merchant_user_id: session.merchant_user_id.clone(),
            status,
            order_id: session.purchase.as_ref().map(|p| p.order_id.clone()),
            binding_id: session.binding_id().cloned(),
            payment_id: session.payment_id().cloned(),
        }
    }
}

/// The resource after the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventState {
    Binding(BindingSnapshot),
    Payment(Payment),
    Refund(Refund),
    Session(SessionSnapshot),
}

impl EventState {
    /// The id of the resource the event is about.
    pub fn resource_id(&self) -> &str {
        match self {
            Self::Binding(b) => b.id.as_str(),
            Self::Payment(p) => p.id.as_str(),
            Self::Refund(r) => r.id.as_str(),
            Self::Session(s) => s.id.as_str(),
        }
    }
}

/// An event about to be written, with the change it tells of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub id: EventId,
    pub merchant_id: MerchantId,
    pub event_type: EventType,
    pub occurred_ms: i64,
    pub state: EventState,
}

impl NewEvent {
    fn new(merchant_id: &MerchantId, event_type: EventType, at_ms: i64, state: EventState) -> Self {
        Self {
            id: EventId::generate(),
            merchant_id: merchant_id.clone(),
            event_type,
            occurred_ms: at_ms,
            state,
        }
    }

    /// A binding created, or (`updated`) the same card bound again.
    pub fn binding_written(binding: &Binding, updated: bool, at_ms: i64) -> Self {
        let event_type = if updated {
            EventType::BindingUpdated
        } else {
            EventType::BindingCreated
        };
        let state = EventState::Binding(BindingSnapshot::of(binding));
        Self::new(&binding.merchant_id, event_type, at_ms, state)
    }

    pub fn binding_revoked(binding: &Binding) -> Self {
        let at_ms = binding.revocation().map_or(binding.created_ms, |r| r.at_ms);
        let state = EventState::Binding(BindingSnapshot::of(binding));
        Self::new(
            &binding.merchant_id,
            EventType::BindingRevoked,
            at_ms,
            state,
        )
    }

    /// A payment's outcome; `None` while it is pending.
    pub fn payment_settled(payment: &Payment) -> Option<Self> {
        let event_type = match payment.state {
            PaymentState::Pending => return None,
            PaymentState::Succeeded { .. } => EventType::PaymentSucceeded,
            PaymentState::Declined { .. } => EventType::PaymentDeclined,
        };
        let state = EventState::Payment(payment.clone());
        Some(Self::new(
            &payment.merchant_id,
            event_type,
            payment.updated_ms,
            state,
        ))
    }

    pub fn refund_succeeded(refund: &Refund) -> Self {
        let state = EventState::Refund(refund.clone());
        Self::new(
            &refund.merchant_id,
            EventType::RefundSucceeded,
            refund.updated_ms,
            state,
        )
    }

    /// A session that has just ended; `None` if it has not.
    pub fn session_ended(session: &BindSession, at_ms: i64) -> Option<Self> {
        let status = session.status_at(at_ms);
        let event_type = match status {
            SessionStatus::Completed => EventType::BindSessionCompleted,
            SessionStatus::Failed => EventType::BindSessionFailed,
            SessionStatus::Expired => EventType::BindSessionExpired,
            SessionStatus::Open | SessionStatus::AwaitingVerification => return None,
        };
        let state = EventState::Session(SessionSnapshot::of(session, status));
        Some(Self::new(&session.merchant_id, event_type, at_ms, state))
    }
}

/// An event as the feed holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: EventId,
    /// The merchant's cursor: this event and every one before it.
    pub seq: i64,
    pub event_type: EventType,
    /// Strictly increasing per resource (not consecutive).
    pub version: i64,
    pub occurred_ms: i64,
    pub state: EventState,
}

/// How often the sequencer looks for committed events without a cursor
/// (only a replica of an older version writes them).
const SEQUENCE_INTERVAL: Duration = Duration::from_secs(1);
/// The most events sequenced in one transaction.
const SEQUENCE_BATCH: i64 = 1000;

impl Services {
    /// The merchant's events after `after_seq`, oldest first; at most `limit`.
    pub async fn list_events(
        &self,
        merchant: &Merchant,
        after_seq: i64,
        limit: i64,
    ) -> DomainResult<Vec<Event>> {
        self.check_cursor(merchant, after_seq).await?;
        Ok(self
            .store
            .list_events(&merchant.id, after_seq, limit)
            .await?)
    }

    /// `list_events` for a stream that follows the feed, checking the
    /// cursor against the purge horizon only if `check_horizon` (the stream
    /// checked it when it opened and checks it again from time to time).
    pub async fn follow_events(
        &self,
        merchant: &Merchant,
        after_seq: i64,
        limit: i64,
        check_horizon: bool,
    ) -> DomainResult<Vec<Event>> {
        if check_horizon {
            self.check_cursor(merchant, after_seq).await?;
        }
        Ok(self
            .store
            .list_events(&merchant.id, after_seq, limit)
            .await?)
    }

    /// Refuses a cursor below the purge horizon: events after it may be
    /// gone, and reading on would skip them without a word.
    pub async fn check_cursor(&self, merchant: &Merchant, after_seq: i64) -> DomainResult<()> {
        if after_seq > 0 && after_seq < self.store.event_horizon(&merchant.id).await? {
            return Err(DomainError::CursorExpired);
        }
        Ok(())
    }

    /// Gives cursors to committed events written without one (by a replica
    /// of an older version) until the task is dropped; wakes the feed's
    /// followers when it did. Each round that finds none is one read of an
    /// index that stays empty.
    pub async fn sequence_events_forever(self: Arc<Self>) {
        loop {
            match self.store.sequence_events(SEQUENCE_BATCH).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(events = n, "events sequenced");
                    self.metrics.events_sequenced(n);
                    self.event_wake.sequenced.send_modify(|round| *round += 1);
                    if n == SEQUENCE_BATCH as u64 {
                        continue;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not sequence events"),
            }
            tokio::time::sleep(SEQUENCE_INTERVAL).await;
        }
    }

    /// A receiver that changes whenever events were written here (or given
    /// cursors by the sequencer): what `StreamEvents` and the deliverer wait
    /// on between pages. Other replicas' events are found by polling.
    pub fn events_sequenced(&self) -> tokio::sync::watch::Receiver<u64> {
        self.event_wake.sequenced.subscribe()
    }

    /// Receives `true` once the service is stopping: followers end their
    /// streams, so that the server's graceful stop is not held open.
    pub fn events_closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.event_wake.closing.subscribe()
    }

    /// Ends every `StreamEvents` (the service is stopping).
    pub fn close_event_streams(&self) {
        self.event_wake.closing.send_replace(true);
    }

    /// Called after a change that wrote events has committed: they have
    /// their cursors.
    pub(crate) fn events_written(&self) {
        // The store counts what committed; the metric catches up with it
        // (a concurrent caller adds only what this one has not).
        let total = self.store.events_written();
        let counted = self.event_wake.counted.fetch_max(total, Ordering::Relaxed);
        if total > counted {
            self.metrics.events_sequenced(total - counted);
        }
        self.event_wake.sequenced.send_modify(|round| *round += 1);
    }
}

/// Wakes the feed's followers and the deliverer after events were written.
pub struct EventWake {
    sequenced: tokio::sync::watch::Sender<u64>,
    /// The store's count of events written, as far as the metrics have it.
    counted: AtomicU64,
    closing: tokio::sync::watch::Sender<bool>,
}

impl Default for EventWake {
    fn default() -> Self {
        Self {
            sequenced: tokio::sync::watch::Sender::new(0),
            counted: AtomicU64::new(0),
            closing: tokio::sync::watch::Sender::new(false),
        }
    }
}
