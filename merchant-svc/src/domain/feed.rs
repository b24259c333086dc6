//! payment-svc's event feed, consumed: what the payment institution changed
//! on its side reaches the shop. A binding the shopper ended there clears
//! the card on file (the next checkout goes through BindAndPay); a payment's
//! outcome settles its order if the order is still pending; a bind
//! session's end is applied as if the shopper had come back.
//!
//! Each event is applied once in effect: by its id (an event seen before
//! changes nothing) and by its resource's version (an older change arriving
//! after a newer one changes nothing). The shop's cursor moves only after
//! the event's effect and its record are committed, so an event is never
//! skipped: after a crash it is read again, and applying it again is
//! harmless.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{FutureExt as _, StreamExt};
use paybind_shared::{
    clock::now_ms,
    ids::{BindingId, MerchantUserId, OrderId, SessionId},
    model::PaymentStatus,
};

use super::{
    model::{OrderStatus, OrderTransition, OrderUpdate},
    payment::{FeedEvent, FeedItem, PaymentInfo},
    Shop, ShopError, ShopResult,
};

/// What is being worked on now, one task at a time per key (an event
/// being applied, an order being paid), each with what wakes those waiting
/// for it.
#[derive(Default)]
pub struct Turns(Mutex<HashMap<String, Arc<tokio::sync::Notify>>>);

/// This task's turn at one key; the next waiting one goes when it drops.
pub struct Turn<'a> {
    turns: &'a Turns,
    key: String,
}

impl Turns {
    /// Waits while another task has the turn at `key`, then takes it.
    pub async fn turn(&self, key: &str) -> Turn<'_> {
        loop {
            let busy = {
                let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
                match now.get(key) {
                    Some(done) => done.clone(),
                    None => {
                        now.insert(key.to_owned(), Arc::default());
                        return Turn {
                            turns: self,
                            key: key.to_owned(),
                        };
                    }
                }
            };
            // Registered first, then checked: the holder removes its entry
            // under the lock and wakes the registered waiters after, so one
            // that still finds the entry held is woken when it goes.
            let done = busy.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if self.is_held(key, &busy) {
                done.await;
            }
        }
    }

    /// Whether `key` is still held by the turn that `busy` belongs to.
    fn is_held(&self, key: &str, busy: &Arc<tokio::sync::Notify>) -> bool {
        let now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        now.get(key).is_some_and(|held| Arc::ptr_eq(held, busy))
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let done = self
            .turns
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
        if let Some(done) = done {
            done.notify_waiters();
        }
    }
}

/// Events this process recorded (or found recorded) lately, with their
/// outcome: the streamed copy of a pushed event is answered from here,
/// with no read. Only what is committed goes in, so an event found here is
/// in the store too; one not found here is looked up there.
pub struct RecentlyApplied(Mutex<hashlink::LruCache<String, EventOutcome>>);

impl Default for RecentlyApplied {
    fn default() -> Self {
        Self(Mutex::new(hashlink::LruCache::new(Self::CAPACITY)))
    }
}

impl RecentlyApplied {
    /// Events kept: a few seconds of pushes under load, well ahead of the
    /// stream that follows them. A bound, not a policy.
    const CAPACITY: usize = 16_384;

    fn get(&self, event_id: &str) -> Option<EventOutcome> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(event_id)
            .copied()
    }

    fn remember(&self, event_id: &str, outcome: EventOutcome) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(event_id.to_owned(), outcome);
    }
}

/// What an event asks of the shop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedChange {
    /// The binding can no longer pay: forget it if it is the user's card.
    BindingRevoked {
        binding_id: BindingId,
        user_id: MerchantUserId,
    },
    /// A payment's outcome, for the order it pays. `bind_and_pay`: the
    /// first payment of a BindAndPay session, applied with the session.
    PaymentSettled {
        order_id: OrderId,
        payment: PaymentInfo,
        bind_and_pay: bool,
    },
    /// A bind session ended: its outcome is read and applied.
    SessionEnded { session_id: SessionId },
    /// Nothing for the shop to do (a binding created or updated, a refund
    /// the shop asked for itself), or a kind of event this build does not
    /// know: recorded, so the feed moves on.
    Nothing,
}

/// How an event reached the shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    /// Read from the feed in cursor order (`ListEvents`, `StreamEvents`):
    /// the shop's cursor moves past it.
    Feed,
    /// Pushed by payment-svc (`NotificationService`): in order per
    /// resource only, so the cursor stays where it is and the feed reads
    /// the event again later (and finds it applied).
    Push,
}

/// What became of an event here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// Its change was applied (or needed nothing).
    Applied,
    /// A newer version of its resource had been applied already.
    Stale,
}

/// An event as the shop recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedEvent {
    pub event_id: String,
    /// As payment-svc names it, e.g. `EVENT_TYPE_BINDING_REVOKED`.
    pub event_type: String,
    pub resource_id: String,
    pub resource_version: i64,
    pub cursor: String,
    pub outcome: EventOutcome,
    pub applied_ms: i64,
}

impl AppliedEvent {
    /// `event`'s record, applied at `applied_ms` with `outcome`.
    fn of(event: &FeedEvent, outcome: EventOutcome, applied_ms: i64) -> Self {
        Self {
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            resource_id: event.resource_id.clone(),
            resource_version: event.version,
            cursor: event.cursor.clone(),
            outcome,
            applied_ms,
        }
    }
}

/// Where the shop is in the feed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FeedPosition {
    /// The cursor of the last event applied; empty before the first.
    pub cursor: String,
    pub updated_ms: i64,
}

/// The position and the latest events applied, for operators.
pub struct FeedStatus {
    pub position: FeedPosition,
    pub recent: Vec<AppliedEvent>,
}

/// How long a payment's event waits for the checkout paying its order here.
const ORDER_WAIT: Duration = Duration::from_secs(2);
/// How often the cursor past events applied before is saved while the
/// stream runs.
const CURSOR_SAVE_EVERY: Duration = Duration::from_millis(250);
/// Events read per page while catching up.
const CATCH_UP_PAGE: i32 = 100;
/// Most events the stream already holds applied together.
const STREAM_BATCH: usize = 64;
/// The pause after the feed broke off (payment-svc down or restarting),
/// doubling up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(10);
/// A stream silent this long (payment-svc sends a heartbeat every 15 s)
/// is taken as broken and opened again.
const SILENCE: Duration = Duration::from_secs(40);

impl Shop {
    /// Applies one event (once in effect) and records it; one read from
    /// the feed also moves the cursor past it.
    pub async fn apply_event(
        &self,
        event: &FeedEvent,
        source: EventSource,
    ) -> ShopResult<EventOutcome> {
        let (outcome, unsaved) = self.apply(event, source).await?;
        if unsaved {
            self.store
                .move_feed_position(&event.cursor, now_ms())
                .await?;
        }
        Ok(outcome)
    }

    /// Applies one event; `true` beside the outcome when it is one read
    /// from the feed that was applied before (pushed, most often) and the
    /// cursor past it is left for the caller to save. Nothing is written
    /// for such an event, nor for one pushed again: under load every event
    /// reaches the shop twice, and the second sighting is answered from
    /// memory (`RecentlyApplied`) when this process recorded the first.
    async fn apply(
        &self,
        event: &FeedEvent,
        source: EventSource,
    ) -> ShopResult<(EventOutcome, bool)> {
        // Under load an event is pushed and streamed at about the same
        // moment: the second copy waits for the first and then finds it
        // recorded instead of applying and recording it again.
        let _turn = self.applying.turn(&event.id).await;
        if let Some(outcome) = self.recently_applied.get(&event.id) {
            return Ok((outcome, source == EventSource::Feed));
        }
        let (applied, version) = self.store.event_seen(&event.id, &event.resource_id).await?;
        if let Some(outcome) = applied {
            self.recently_applied.remember(&event.id, outcome);
            return Ok((outcome, source == EventSource::Feed));
        }
        let newer = version.is_some_and(|applied| applied >= event.version);
        let outcome = if newer {
            EventOutcome::Stale
        } else {
            self.apply_change(&event.change).await?;
            EventOutcome::Applied
        };
        self.store
            .record_event(
                &AppliedEvent::of(event, outcome, now_ms()),
                source == EventSource::Feed,
            )
            .await?;
        self.recorded(event, outcome, source).await?;
        Ok((outcome, false))
    }

    /// After an event's record is committed: remembered, and a revocation
    /// applied once more — a session's answer read before it may have put
    /// the card back on file meanwhile; from the record on, it cannot.
    async fn recorded(
        &self,
        event: &FeedEvent,
        outcome: EventOutcome,
        source: EventSource,
    ) -> ShopResult<()> {
        self.recently_applied.remember(&event.id, outcome);
        if let (FeedChange::BindingRevoked { .. }, EventOutcome::Applied) = (&event.change, outcome)
        {
            self.apply_change(&event.change).await?;
        }
        tracing::info!(event_id = %event.id, event_type = %event.event_type, resource_id = %event.resource_id, ?outcome, ?source, "event applied");
        Ok(())
    }

    /// Applies events pushed together (`NotifyBatch`; each of another
    /// resource, so in any order) as `apply` would one by one, with one
    /// read for what was applied before, one for the orders their
    /// payments pay, and one write recording them all (the cursor stays).
    pub async fn apply_pushed(&self, events: &[FeedEvent]) -> ShopResult<()> {
        self.apply_together(events, None).await.map(|_| ())
    }

    /// Applies events read from the feed together, in cursor order, as
    /// `apply` would one by one: in runs of events of distinct resources,
    /// each run applied at once and recorded with the cursor moved past
    /// it. Under load the stream brings several events at a time, most of
    /// them applied before (pushed); one by one, each fresh one cost a
    /// read, its order's read and a write. `true` when the cursor past the
    /// last is left for the caller to save (it was applied before).
    async fn apply_streamed(&self, events: &[FeedEvent]) -> ShopResult<bool> {
        let mut unsaved = false;
        let mut rest = events;
        while !rest.is_empty() {
            // The longest run with no resource twice: a later change of a
            // resource must see the earlier one applied.
            let mut resources = std::collections::HashSet::new();
            let run = rest
                .iter()
                .take_while(|e| resources.insert(e.resource_id.as_str()))
                .count();
            let (now, later) = rest.split_at(run);
            let last = now.last().map(|e| e.cursor.as_str());
            unsaved = self.apply_together(now, last).await?;
            rest = later;
        }
        Ok(unsaved)
    }

    /// `events` (each of another resource) applied and recorded at once;
    /// with a `cursor` (read from the feed), the record moves it there.
    /// `true` when nothing was written and the cursor, if any, is left for
    /// the caller to save.
    async fn apply_together(&self, events: &[FeedEvent], cursor: Option<&str>) -> ShopResult<bool> {
        // Turns taken in id order: batches sharing events wait for each
        // other without a cycle.
        let mut ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut turns = Vec::with_capacity(ids.len());
        for id in &ids {
            turns.push(self.applying.turn(id).await);
        }
        let mut taken = std::collections::HashSet::new();
        let fresh: Vec<&FeedEvent> = events
            .iter()
            .filter(|e| taken.insert(e.id.as_str()))
            .filter(|e| self.recently_applied.get(&e.id).is_none())
            .collect();
        if fresh.is_empty() {
            return Ok(cursor.is_some());
        }
        let keys: Vec<(&str, &str)> = fresh
            .iter()
            .map(|e| (e.id.as_str(), e.resource_id.as_str()))
            .collect();
        let seen = self.store.events_seen(&keys).await?;
        let mut to_apply = Vec::with_capacity(fresh.len());
        for (event, (applied, version)) in fresh.into_iter().zip(seen) {
            match applied {
                Some(outcome) => self.recently_applied.remember(&event.id, outcome),
                None if version.is_some_and(|v| v >= event.version) => {
                    to_apply.push((event, EventOutcome::Stale));
                }
                None => to_apply.push((event, EventOutcome::Applied)),
            }
        }
        if to_apply.is_empty() {
            return Ok(cursor.is_some());
        }
        // The orders of the payments' outcomes, in one read: most were
        // settled by the checkout that paid them, or are not this shop's.
        fn settles(event: &FeedEvent) -> Option<(&OrderId, &PaymentInfo)> {
            match &event.change {
                FeedChange::PaymentSettled {
                    order_id,
                    payment,
                    bind_and_pay: false,
                } if payment.status != PaymentStatus::Pending => Some((order_id, payment)),
                _ => None,
            }
        }
        let mut order_ids: Vec<&OrderId> = to_apply
            .iter()
            .filter(|(_, outcome)| *outcome == EventOutcome::Applied)
            .filter_map(|(event, _)| settles(event).map(|(order_id, _)| order_id))
            .collect();
        // As in `settle_from_feed`: after the checkouts paying them here
        // (in id order, as the events' turns).
        order_ids.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        order_ids.dedup();
        let mut after_checkouts = Vec::with_capacity(order_ids.len());
        for order_id in &order_ids {
            after_checkouts.push(self.after_checkout(order_id).await);
        }
        let pending = self.store.pending_orders(&order_ids).await?;
        for (event, outcome) in &to_apply {
            if *outcome != EventOutcome::Applied {
                continue;
            }
            match settles(event) {
                Some((order_id, payment)) => {
                    if pending.contains(order_id) {
                        self.settle_pending_order(order_id, payment).await?;
                    }
                }
                None => self.apply_change(&event.change).await?,
            }
        }
        let now = now_ms();
        let records: Vec<AppliedEvent> = to_apply
            .iter()
            .map(|(event, outcome)| AppliedEvent::of(event, *outcome, now))
            .collect();
        self.store.record_events(&records, cursor).await?;
        let source = match cursor {
            Some(_) => EventSource::Feed,
            None => EventSource::Push,
        };
        for (event, outcome) in &to_apply {
            self.recorded(event, *outcome, source).await?;
        }
        drop(turns);
        Ok(false)
    }

    /// Waits (at most `ORDER_WAIT`) while a checkout of this process pays
    /// `order_id`: its payment's event, often here before Pay's answer is,
    /// then finds the order settled by the checkout and writes nothing, or
    /// settles it if the checkout could not (its answer lost). Past the
    /// wait it goes on alone: every settlement is conditional.
    async fn after_checkout(&self, order_id: &OrderId) -> Option<Turn<'_>> {
        tokio::time::timeout(ORDER_WAIT, self.paying.turn(order_id.as_str()))
            .await
            .ok()
    }

    /// Every effect is idempotent and conditional: applying it again, or
    /// after the shop moved on by itself, changes nothing.
    async fn apply_change(&self, change: &FeedChange) -> ShopResult<()> {
        match change {
            FeedChange::BindingRevoked {
                binding_id,
                user_id,
            } => self.store.clear_card_if(user_id, binding_id).await?,
            FeedChange::PaymentSettled {
                order_id,
                payment,
                bind_and_pay,
            } => {
                if !bind_and_pay {
                    self.settle_from_feed(order_id, payment).await?;
                }
            }
            FeedChange::SessionEnded { session_id } => {
                if self.store.session_user(session_id).await?.is_some() {
                    match self.complete_session(session_id).await {
                        Ok(_) | Err(ShopError::SessionNotFound) => {}
                        // A definite answer that will not change: recorded
                        // and passed over (the session check still asks).
                        Err(ShopError::Refused(refusal)) => {
                            tracing::warn!(session_id = %session_id, reason = %refusal.reason, "a session event could not be applied");
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            FeedChange::Nothing => {}
        }
        Ok(())
    }

    /// An order paid with the card on file whose answer the shop never got
    /// (payment-svc was slow, or the shop restarted): settled now.
    async fn settle_from_feed(&self, order_id: &OrderId, payment: &PaymentInfo) -> ShopResult<()> {
        if payment.status == PaymentStatus::Pending {
            return Ok(());
        }
        let _paid_here = self.after_checkout(order_id).await;
        // Most outcomes find their order settled by the checkout that paid
        // it (or no order of this shop at all): a read, not a write, says so.
        let pending = self.store.get_order(order_id).await?;
        if pending.is_none_or(|o| o.status != OrderStatus::PendingPayment) {
            return Ok(());
        }
        self.settle_pending_order(order_id, payment).await
    }

    /// Settles an order found waiting for its payment (if it still is).
    async fn settle_pending_order(
        &self,
        order_id: &OrderId,
        payment: &PaymentInfo,
    ) -> ShopResult<()> {
        let paid = match payment.status {
            PaymentStatus::Succeeded => true,
            PaymentStatus::Declined => false,
            PaymentStatus::Pending => return Ok(()),
        };
        let update = OrderUpdate {
            decline_reason: (!paid).then(|| payment.decline_reason.clone()),
            payment_id: Some(payment.id.clone()),
            paid_with_card_on_file: true,
            ..OrderUpdate::to(if paid {
                OrderStatus::Paid
            } else {
                OrderStatus::Declined
            })
        };
        let settled = self
            .store
            .update_order(&OrderTransition {
                order_id: order_id.clone(),
                from: vec![OrderStatus::PendingPayment],
                update,
                now_ms: now_ms(),
            })
            .await?;
        if let Some(order) = settled {
            tracing::info!(order_id = %order.id, status = ?order.status, "order settled by payment-svc's event");
        }
        Ok(())
    }

    /// Reads the feed from the stored cursor until it is caught up; the
    /// number of events applied.
    pub async fn reconcile(&self) -> ShopResult<usize> {
        let mut applied = 0;
        loop {
            let cursor = self.store.feed_position().await?.cursor;
            let page = self.payments.events_after(&cursor, CATCH_UP_PAGE).await?;
            let full = page.len() == CATCH_UP_PAGE as usize;
            if let Some(last) = page.last() {
                if self.apply_streamed(&page).await? {
                    self.store
                        .move_feed_position(&last.cursor, now_ms())
                        .await?;
                }
            }
            applied += page.len();
            if !full {
                return Ok(applied);
            }
        }
    }

    /// Follows the feed for as long as the task runs: catches up from the
    /// stored cursor, then applies each event as payment-svc streams it.
    /// When the stream breaks off, it catches up again and reopens it.
    pub async fn follow_feed(&self) {
        let mut pause = FIRST_PAUSE;
        loop {
            match self.follow_once().await {
                Ok(()) => pause = FIRST_PAUSE,
                Err(ShopError::Refused(refusal)) if refusal.reason == "CURSOR_EXPIRED" => {
                    // Down longer than payment-svc keeps events: what came
                    // after the stored cursor may be gone. Start over at
                    // the oldest kept; the settler and the session check
                    // still ask after every pending order and session.
                    tracing::error!(
                        "the shop's feed cursor is older than what payment-svc keeps: events were missed; reading from the oldest kept"
                    );
                    if let Err(e) = self.store.reset_feed_position(now_ms()).await {
                        tracing::warn!(error = %e, "could not reset the feed cursor");
                        tokio::time::sleep(pause).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, ?pause, "event feed broke off; reading it again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
        }
    }

    async fn follow_once(&self) -> ShopResult<()> {
        let caught_up = self.reconcile().await?;
        if caught_up > 0 {
            tracing::info!(
                events = caught_up,
                "caught up with payment-svc's event feed"
            );
        }
        let cursor = self.store.feed_position().await?.cursor;
        let mut stream = self.payments.follow_events(&cursor).await?;
        // The cursor past events applied before (pushed first) is saved at
        // most every `CURSOR_SAVE_EVERY`, and whenever the stream pauses or
        // ends: lost in a crash, those events are read again and found
        // applied.
        let mut unsaved: Option<String> = None;
        let mut saved = tokio::time::Instant::now();
        loop {
            let item = match &unsaved {
                Some(_) => tokio::time::timeout(CURSOR_SAVE_EVERY, stream.next()).await,
                None => tokio::time::timeout(SILENCE, stream.next()).await,
            };
            let event = match item {
                Ok(Some(Ok(FeedItem::Event(event)))) => event,
                Err(_) if unsaved.is_some() => {
                    self.save_cursor(&mut unsaved, &mut saved).await?;
                    continue;
                }
                other => {
                    self.save_cursor(&mut unsaved, &mut saved).await?;
                    match other {
                        Err(_) => {
                            tracing::warn!("event stream silent too long; opening it again");
                            return Ok(());
                        }
                        Ok(None) => return Ok(()),
                        Ok(Some(Err(e))) => return Err(e.into()),
                        Ok(Some(Ok(_))) => continue,
                    }
                }
            };
            // With it, whatever else the stream already holds (under load
            // it brings several events at a time), applied together.
            let mut events = vec![event];
            // What ended the stream meanwhile, once those are applied.
            let mut end = None;
            while events.len() < STREAM_BATCH {
                match stream.next().now_or_never() {
                    Some(Some(Ok(FeedItem::Event(event)))) => events.push(event),
                    Some(Some(Ok(_))) => {}
                    Some(Some(Err(e))) => {
                        end = Some(Err(e));
                        break;
                    }
                    Some(None) => {
                        end = Some(Ok(()));
                        break;
                    }
                    None => break,
                }
            }
            let last = events.last().map(|e| e.cursor.clone()).unwrap_or_default();
            match self.apply_streamed(&events).await {
                Ok(true) => unsaved = Some(last),
                Ok(false) => {
                    unsaved = None;
                    saved = tokio::time::Instant::now();
                }
                // The unsaved cursor is not saved: a run of these events may
                // have moved the cursor past it already. What it covers was
                // applied before, and is read again and found so.
                Err(e) => return Err(e),
            }
            if let Some(end) = end {
                self.save_cursor(&mut unsaved, &mut saved).await?;
                return end.map_err(Into::into);
            }
            if unsaved.is_some() && saved.elapsed() >= CURSOR_SAVE_EVERY {
                self.save_cursor(&mut unsaved, &mut saved).await?;
            }
        }
    }

    async fn save_cursor(
        &self,
        unsaved: &mut Option<String>,
        saved: &mut tokio::time::Instant,
    ) -> ShopResult<()> {
        if let Some(cursor) = unsaved.take() {
            self.store.move_feed_position(&cursor, now_ms()).await?;
            *saved = tokio::time::Instant::now();
        }
        Ok(())
    }

    /// The cursor and the latest `limit` events applied.
    pub async fn feed_status(&self, limit: i64) -> ShopResult<FeedStatus> {
        Ok(FeedStatus {
            position: self.store.feed_position().await?,
            recent: self.store.recent_events(limit).await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use paybind_shared::{ids::MerchantUserId, model::Presentation};

    use super::*;
    use crate::domain::{fake, NewUser};

    async fn bound_user(
        shop: &Shop,
        payments: &fake::FakePayments,
        id: &str,
    ) -> (MerchantUserId, BindingId) {
        let id = MerchantUserId::parse(id).expect("id");
        shop.create_user(NewUser {
            id: id.clone(),
            display_name: "Zhang San".into(),
            phone: None,
        })
        .await
        .expect("user");
        let session = shop
            .start_binding(&id, Presentation::Redirect, "")
            .await
            .expect("session");
        payments.complete(&session.id);
        shop.complete_session(&session.id).await.expect("complete");
        let card = shop
            .user(&id)
            .await
            .expect("user")
            .card
            .expect("card on file");
        (id, card.binding_id)
    }

    fn revoked(
        id: &str,
        binding_id: &BindingId,
        user_id: &MerchantUserId,
        version: i64,
    ) -> FeedEvent {
        FeedEvent {
            id: id.into(),
            event_type: "EVENT_TYPE_BINDING_REVOKED".into(),
            cursor: String::new(),
            resource_id: binding_id.as_str().into(),
            version,
            change: FeedChange::BindingRevoked {
                binding_id: binding_id.clone(),
                user_id: user_id.clone(),
            },
        }
    }

    #[tokio::test]
    async fn an_event_delivered_twice_or_late_changes_the_shop_once() {
        let (shop, payments, _dir) = fake::shop().await;
        let (bob, binding) = bound_user(&shop, &payments, "bob").await;
        let revocation = payments.publish(revoked("evt_2", &binding, &bob, 20));
        assert_eq!(
            shop.apply_event(&revocation, EventSource::Feed)
                .await
                .expect("apply"),
            EventOutcome::Applied
        );
        assert!(shop.user(&bob).await.expect("user").card.is_none());

        // Delivered again: recorded once, with what became of it the first time.
        assert_eq!(
            shop.apply_event(&revocation, EventSource::Feed)
                .await
                .expect("again"),
            EventOutcome::Applied
        );
        // An older change of the same binding arriving late changes nothing:
        // here a (made-up) revocation at version 10, after the card was put
        // back on file, would clear it if it were applied.
        let (_, again) = {
            let session = shop
                .start_binding(&bob, Presentation::Redirect, "")
                .await
                .expect("session");
            payments.complete(&session.id);
            shop.complete_session(&session.id).await.expect("complete");
            (
                bob.clone(),
                shop.user(&bob).await.expect("user").card.expect("card"),
            )
        };
        let mut late = revoked("evt_1", &again.binding_id, &bob, 10);
        late.resource_id = binding.as_str().into();
        let late = payments.publish(late);
        assert_eq!(
            shop.apply_event(&late, EventSource::Feed)
                .await
                .expect("late"),
            EventOutcome::Stale
        );
        assert!(shop.user(&bob).await.expect("user").card.is_some());

        let status = shop.feed_status(10).await.expect("status");
        assert_eq!(status.position.cursor, late.cursor);
        let ids: Vec<&str> = status.recent.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(ids.contains(&"evt_1") && ids.contains(&"evt_2"));
    }

    #[tokio::test]
    async fn a_pushed_revocation_keeps_the_card_off_file_and_the_cursor_still() {
        let (shop, payments, _dir) = fake::shop().await;
        let (cy, binding) = bound_user(&shop, &payments, "cy").await;
        let card = shop.user(&cy).await.expect("user").card.expect("card");
        let revocation = payments.publish(revoked("evt_r", &binding, &cy, 7));
        assert_eq!(
            shop.apply_event(&revocation, EventSource::Push)
                .await
                .expect("apply"),
            EventOutcome::Applied
        );
        assert!(shop.user(&cy).await.expect("user").card.is_none());
        // A session's answer read before the revocation, written after it:
        // the revoked binding does not come back.
        shop.store.set_card(&cy, Some(&card)).await.expect("set");
        assert!(shop.user(&cy).await.expect("user").card.is_none());
        // Pushed, not read from the feed: the cursor stays.
        let status = shop.feed_status(5).await.expect("status");
        assert_eq!(status.position.cursor, "");
        assert_eq!(status.recent.len(), 1);
        // Read from the feed later: nothing applied twice, the cursor moves.
        assert_eq!(shop.reconcile().await.expect("reconcile"), 1);
        assert_eq!(
            shop.feed_status(1).await.expect("status").position.cursor,
            revocation.cursor
        );
    }

    #[tokio::test]
    async fn reconciling_applies_what_was_missed_once() {
        let (shop, payments, _dir) = fake::shop().await;
        let (ann, a) = bound_user(&shop, &payments, "ann").await;
        let (ben, b) = bound_user(&shop, &payments, "ben").await;
        payments.publish(revoked("evt_a", &a, &ann, 5));
        payments.publish(FeedEvent {
            id: "evt_new".into(),
            event_type: "EVENT_TYPE_SOMETHING_NEW".into(),
            cursor: String::new(),
            resource_id: "thing_1".into(),
            version: 1,
            change: FeedChange::Nothing,
        });
        payments.publish(revoked("evt_b", &b, &ben, 6));
        assert_eq!(shop.reconcile().await.expect("reconcile"), 3);
        assert!(shop.user(&ann).await.expect("user").card.is_none());
        assert!(shop.user(&ben).await.expect("user").card.is_none());
        assert_eq!(
            shop.feed_status(1).await.expect("status").position.cursor,
            "3"
        );
        // Caught up: nothing read twice.
        assert_eq!(shop.reconcile().await.expect("again"), 0);
    }

    #[tokio::test]
    async fn events_read_together_apply_a_resource_changed_twice_in_order() {
        let (shop, payments, _dir) = fake::shop().await;
        let (ann, a) = bound_user(&shop, &payments, "ann").await;
        let (ben, b) = bound_user(&shop, &payments, "ben").await;
        let order = pending_order(&shop, &ben, "order-1").await;
        payments.publish(revoked("evt_1", &a, &ann, 5));
        payments.publish(paid("evt_2", &order.id));
        // The same binding again, an older change: it must find the first
        // recorded, so it is read as stale, not applied.
        payments.publish(revoked("evt_3", &a, &ann, 4));
        payments.publish(revoked("evt_4", &b, &ben, 6));
        assert_eq!(shop.reconcile().await.expect("reconcile"), 4);
        assert!(shop.user(&ann).await.expect("user").card.is_none());
        assert!(shop.user(&ben).await.expect("user").card.is_none());
        assert_eq!(
            shop.order(&order.id).await.expect("order").status,
            OrderStatus::Paid
        );
        let status = shop.feed_status(10).await.expect("status");
        assert_eq!(status.position.cursor, "4");
        let outcome = |id: &str| {
            status
                .recent
                .iter()
                .find(|e| e.event_id == id)
                .map(|e| e.outcome)
        };
        assert_eq!(outcome("evt_1"), Some(EventOutcome::Applied));
        assert_eq!(outcome("evt_2"), Some(EventOutcome::Applied));
        assert_eq!(outcome("evt_3"), Some(EventOutcome::Stale));
        assert_eq!(outcome("evt_4"), Some(EventOutcome::Applied));
        assert_eq!(shop.reconcile().await.expect("again"), 0);
    }

    /// An order of `user` waiting for its payment, as a checkout leaves
    /// one whose answer it never got.
    async fn pending_order(
        shop: &Shop,
        user: &MerchantUserId,
        key: &str,
    ) -> crate::domain::model::Order {
        use paybind_shared::{
            ids::IdempotencyKey,
            money::{Currency, Money},
        };
        let order = crate::domain::model::Order {
            id: OrderId::generate(),
            user_id: user.clone(),
            amount: Money::new(100, Currency::parse("CNY").expect("CNY")).expect("amount"),
            description: String::new(),
            status: OrderStatus::PendingPayment,
            decline_reason: None,
            payment_id: None,
            refunded_minor: 0,
            page: None,
            paid_with_card_on_file: false,
            presentation: Presentation::Redirect,
            return_url: String::new(),
            idempotency_key: IdempotencyKey::parse(key).expect("key"),
            request_hash: key.into(),
            created_ms: 1,
            updated_ms: 1,
        };
        shop.store
            .insert_orders(std::slice::from_ref(&order))
            .await
            .expect("order");
        order
    }

    fn paid(id: &str, order: &OrderId) -> FeedEvent {
        FeedEvent {
            id: id.into(),
            event_type: "EVENT_TYPE_PAYMENT_SUCCEEDED".into(),
            cursor: String::new(),
            resource_id: format!("pay_{id}"),
            version: 1,
            change: FeedChange::PaymentSettled {
                order_id: order.clone(),
                payment: PaymentInfo {
                    id: paybind_shared::ids::PaymentId::generate(),
                    status: PaymentStatus::Succeeded,
                    decline_reason: String::new(),
                    refunded_minor: 0,
                },
                bind_and_pay: false,
            },
        }
    }

    #[tokio::test]
    async fn events_pushed_together_are_each_applied_once_and_an_order_being_paid_waits_for_its_checkout(
    ) {
        let (shop, payments, _dir) = fake::shop().await;
        let (ann, a) = bound_user(&shop, &payments, "ann").await;
        let (ben, b) = bound_user(&shop, &payments, "ben").await;
        let waiting = pending_order(&shop, &ann, "k-waiting").await;
        let paying = pending_order(&shop, &ann, "k-paying").await;
        let revoke_a = payments.publish(revoked("evt_a", &a, &ann, 5));
        let revoke_b = payments.publish(revoked("evt_b", &b, &ben, 6));
        let waiting_paid = payments.publish(paid("evt_w", &waiting.id));
        let paying_paid = payments.publish(paid("evt_p", &paying.id));
        // One of them was applied before (pushed alone).
        shop.apply_event(&revoke_b, EventSource::Push)
            .await
            .expect("alone");
        // A checkout here is paying one order: its event waits for it.
        let checkout = shop.paying.turn(paying.id.as_str()).await;
        // Together, one of them twice.
        let batch = [
            revoke_a.clone(),
            revoke_b.clone(),
            waiting_paid.clone(),
            paying_paid.clone(),
            revoke_a.clone(),
        ];
        let applied = {
            let shop = shop.clone();
            tokio::spawn(async move { shop.apply_pushed(&batch).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!applied.is_finished(), "the batch waits for the checkout");
        assert_eq!(
            shop.order(&paying.id).await.expect("order").status,
            OrderStatus::PendingPayment
        );
        // The checkout ends without writing its outcome (its answer was
        // lost): the event settles the order.
        drop(checkout);
        tokio::time::timeout(Duration::from_secs(5), applied)
            .await
            .expect("applied once the checkout is done")
            .expect("task")
            .expect("applied");
        assert!(shop.user(&ann).await.expect("user").card.is_none());
        assert!(shop.user(&ben).await.expect("user").card.is_none());
        assert_eq!(
            shop.order(&waiting.id).await.expect("order").status,
            OrderStatus::Paid
        );
        assert_eq!(
            shop.order(&paying.id).await.expect("order").status,
            OrderStatus::Paid,
            "settled by its event once the checkout that paid it was done"
        );
        let recorded = |status: &FeedStatus, id: &str| {
            status.recent.iter().filter(|e| e.event_id == id).count()
        };
        let status = shop.feed_status(10).await.expect("status");
        for id in ["evt_a", "evt_b", "evt_w", "evt_p"] {
            assert_eq!(recorded(&status, id), 1, "{id}");
        }
        // Pushed: the cursor stays where it was.
        assert_eq!(status.position.cursor, "");
        // Pushed again (an attempt whose answer was lost): nothing changes.
        shop.apply_pushed(&[paying_paid, revoke_a])
            .await
            .expect("again");
        let again = shop.feed_status(10).await.expect("status");
        assert_eq!(again.recent.len(), status.recent.len());
        // Read from the feed later: found applied, the cursor moves past them.
        assert_eq!(shop.reconcile().await.expect("reconcile"), 4);
        assert_eq!(
            shop.feed_status(1).await.expect("status").position.cursor,
            "4"
        );
    }

    #[test]
    fn recent_events_are_answered_from_memory_and_the_oldest_make_room() {
        let recent = RecentlyApplied::default();
        recent.remember("ev_first", EventOutcome::Stale);
        recent.remember("ev_1", EventOutcome::Applied);
        assert_eq!(recent.get("ev_first"), Some(EventOutcome::Stale));
        assert_eq!(recent.get("ev_1"), Some(EventOutcome::Applied));
        assert_eq!(recent.get("ev_never"), None);
        for i in 0..RecentlyApplied::CAPACITY {
            recent.remember(&format!("ev_more_{i}"), EventOutcome::Applied);
        }
        assert_eq!(recent.get("ev_first"), None, "the oldest made room");
        assert_eq!(
            recent.get(&format!("ev_more_{}", RecentlyApplied::CAPACITY - 1)),
            Some(EventOutcome::Applied)
        );
    }

    #[tokio::test]
    async fn the_second_copy_of_an_event_waits_for_the_first_and_others_do_not() {
        let applying = Arc::new(Turns::default());
        let first = applying.turn("ev_1").await;
        // Another event goes at once.
        let other = tokio::time::timeout(Duration::from_secs(1), applying.turn("ev_2"))
            .await
            .expect("another event is not held up");
        drop(other);
        let (took, mut taken) = tokio::sync::oneshot::channel();
        let waiter = {
            let applying = applying.clone();
            tokio::spawn(async move {
                let _turn = applying.turn("ev_1").await;
                let _ = took.send(());
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            taken.try_recv().is_err(),
            "the second copy went while the first was being applied"
        );
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the second copy goes once the first is done")
            .expect("task");
        assert!(
            applying.0.lock().expect("lock").is_empty(),
            "nothing left held"
        );
    }
}
