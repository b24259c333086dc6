//! Events pushed to the merchant's `NotificationService`: merchant-svc
//! learns of a change even when it cannot read the feed; a notification
//! delivered twice or late changes the shop once; only payment-svc may
//! notify; an event committed before payment-svc went down is delivered
//! after it restarts; attempts follow the schedule, are kept with their
//! outcome, and end FAILED; a resource's events arrive in order; a
//! merchant's due events go in one `NotifyBatch` (or one by one to a
//! merchant that takes no batches), and merchant-svc applies a batch whole
//! or refuses it whole; and two replicas on one PostgreSQL deliver each
//! attempt once.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use paybind_tests::{
    fixtures::{bind_card, card_on_file, shop_user_with_card, VISA},
    mpb, pb, reason, Recorder, Stack, OPERATOR, SHOP_A,
};
use tonic::{transport::Channel, Code};

type R = anyhow::Result<()>;
type Feed = pb::event_service_client::EventServiceClient<Channel>;
type Notifications = mpb::notification_service_client::NotificationServiceClient<Channel>;
type Shop = mpb::merchant_service_client::MerchantServiceClient<Channel>;

mod with_merchant {
    paybind_tests::on_both_backends!(with_merchant = true;
        a_pushed_event_reaches_the_shop_while_its_feed_link_is_down,
        a_notification_twice_or_late_changes_the_shop_once_and_only_payment_svc_may_send_one,
        an_event_committed_while_the_shop_was_down_is_delivered_after_payment_svc_restarts,
        an_operator_ends_a_binding_and_the_shop_is_told,
        a_notification_batch_is_applied_whole_or_refused_whole,
    );
    use super::*;
}

paybind_tests::on_both_backends!(with_merchant = false;
    attempts_follow_the_schedule_are_kept_and_end_failed,
    a_resources_events_arrive_in_order,
    an_attempt_cut_off_by_a_stop_is_made_again_after_its_lease,
    a_merchants_due_events_are_pushed_in_one_batch,
    a_merchant_that_takes_no_batches_gets_each_event_alone,
);

/// Replicas share a PostgreSQL database (a SQLite file has one process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_replicas_deliver_each_attempt_once() -> R {
    paybind_tests::run_scenario(paybind_tests::Backend::Postgres, false, |s| {
        Box::pin(two_replicas_deliver_each_attempt_once(s))
    })
    .await
}

// ---------------------------------------------------------------- helpers

/// Every event of SHOP_A's feed.
async fn all_events(feed: &mut Feed) -> anyhow::Result<Vec<pb::Event>> {
    Ok(feed
        .list_events(pb::ListEventsRequest {
            after_cursor: String::new(),
            page_size: 100,
        })
        .await?
        .into_inner()
        .events)
}

/// The first event of `kind` about `resource_id`, waited for (5 s).
async fn event_of(
    feed: &mut Feed,
    kind: pb::EventType,
    resource_id: &str,
) -> anyhow::Result<pb::Event> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = all_events(feed)
            .await?
            .into_iter()
            .find(|e| e.r#type == kind as i32 && e.resource_id == resource_id);
        if let Some(e) = found {
            return Ok(e);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no {kind:?} event for {resource_id}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The delivery of `event_id` once `done` says it is (10 s at most).
async fn delivery_when(
    feed: &mut Feed,
    event_id: &str,
    done: impl Fn(&pb::Delivery) -> bool,
) -> anyhow::Result<pb::Delivery> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let delivery = feed
            .get_delivery(pb::GetDeliveryRequest {
                event_id: event_id.into(),
            })
            .await?
            .into_inner()
            .delivery
            .expect("delivery");
        if done(&delivery) {
            return Ok(delivery);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the delivery of {event_id} is still {delivery:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn delivered(d: &pb::Delivery) -> bool {
    d.status == pb::DeliveryStatus::Delivered as i32
}

fn outcomes(d: &pb::Delivery) -> Vec<pb::AttemptOutcome> {
    d.attempts
        .iter()
        .map(|a| pb::AttemptOutcome::try_from(a.outcome).expect("outcome"))
        .collect()
}

async fn active_binding(stack: &Stack, user: &str) -> anyhow::Result<pb::Binding> {
    let mut payments = stack.client(SHOP_A).await?;
    Ok(payments
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: user.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .bindings
        .pop()
        .expect("an active binding"))
}

/// Ends `user`'s binding at payment-svc (not through merchant-svc), as a
/// shopper or the payment institution would; the binding's id.
async fn end_at_payment_svc(stack: &Stack, user: &str) -> anyhow::Result<String> {
    let binding = active_binding(stack, user).await?;
    stack
        .client(SHOP_A)
        .await?
        .unbind(pb::UnbindRequest {
            binding_token: binding.binding_token,
            merchant_user_id: user.into(),
            reason: "ended at the payment institution".into(),
        })
        .await?;
    Ok(binding.binding_id)
}

async fn until_card_forgotten(
    stack: &Stack,
    user: &str,
    within: Duration,
) -> anyhow::Result<Duration> {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    let started = Instant::now();
    while card_on_file(&mut shop, user).await? {
        anyhow::ensure!(
            started.elapsed() < within,
            "the shop still has {user}'s card after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(started.elapsed())
}

/// merchant-svc's NotificationService, called with `identity`'s certificate.
async fn notifications_as(stack: &Stack, identity: &str) -> anyhow::Result<Notifications> {
    Ok(Notifications::new(
        paybind_tests::channel_to(stack.merchant_addr()?, identity).await?,
    ))
}

async fn feed_status(stack: &Stack) -> anyhow::Result<mpb::GetEventFeedResponse> {
    Ok(stack
        .merchant_client(OPERATOR)
        .await?
        .get_event_feed(mpb::GetEventFeedRequest { page_size: 100 })
        .await?
        .into_inner())
}

/// SHOP_A's notifications going to a new [`Recorder`] (refusing the first
/// `refuse` attempts of each event).
async fn start_recorder(stack: &Stack, refuse: u32) -> anyhow::Result<Recorder> {
    let recorder = Recorder::start(refuse).await?;
    stack
        .admin(payment_svc::admin::MerchantCommand::SetNotify {
            id: SHOP_A.into(),
            url: format!("https://localhost:{}", recorder.addr.port()),
            server_name: None,
        })
        .await?;
    Ok(recorder)
}

/// `user` bound at SHOP_A: the feed, the binding and its creation event.
async fn bound(stack: &Stack, user: &str) -> anyhow::Result<(Feed, pb::Binding, pb::Event)> {
    let mut c = stack.client(SHOP_A).await?;
    let binding = bind_card(stack, &mut c, user, VISA).await?;
    let mut feed = stack.events_client(SHOP_A).await?;
    let created = event_of(
        &mut feed,
        pb::EventType::BindingCreated,
        &binding.binding_id,
    )
    .await?;
    Ok((feed, binding, created))
}

/// A shop user `user` with a card on file, the shop's client, SHOP_A's
/// feed and the binding's creation event, once the shop has applied it.
async fn card_on_file_applied(
    stack: &Stack,
    user: &str,
) -> anyhow::Result<(Shop, Feed, pb::Event)> {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    shop_user_with_card(stack, &mut shop, user, VISA).await?;
    let binding = active_binding(stack, user).await?;
    let mut feed = stack.events_client(SHOP_A).await?;
    let created = event_of(
        &mut feed,
        pb::EventType::BindingCreated,
        &binding.binding_id,
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !feed_status(stack)
        .await?
        .recent
        .iter()
        .any(|e| e.event_id == created.event_id)
    {
        anyhow::ensure!(Instant::now() < deadline, "the creation was never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((shop, feed, created))
}

// -------------------------------------------------------------- scenarios

async fn a_pushed_event_reaches_the_shop_while_its_feed_link_is_down(stack: &Stack) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    shop_user_with_card(stack, &mut shop, "ann", VISA).await?;
    let mut feed = stack.events_client(SHOP_A).await?;
    let created = event_of(
        &mut feed,
        pb::EventType::BindingCreated,
        &active_binding(stack, "ann").await?.binding_id,
    )
    .await?;
    // Everything so far is in the shop's feed position.
    let deadline = Instant::now() + Duration::from_secs(5);
    while feed_status(stack).await?.cursor.parse::<i64>().unwrap_or(0)
        < created.cursor.parse::<i64>()?
    {
        anyhow::ensure!(Instant::now() < deadline, "the shop never read the feed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // merchant-svc can no longer reach payment-svc: its feed is cut off.
    // payment-svc still reaches merchant-svc, and pushes.
    stack.pause_payment_link()?;
    let binding_id = end_at_payment_svc(stack, "ann").await?;
    let revoked = event_of(&mut feed, pb::EventType::BindingRevoked, &binding_id).await?;
    let delivery = delivery_when(&mut feed, &revoked.event_id, delivered).await?;
    let took = match until_card_forgotten(stack, "ann", Duration::from_secs(5)).await {
        Ok(took) => took,
        Err(e) => {
            let status = feed_status(stack).await?;
            anyhow::bail!("{e}: {delivery:?} {status:?} {revoked:?}");
        }
    };
    // card_on_file waits out GetUser's quick read of today's limits (300
    // ms) through the paused link: the push itself came before.
    assert!(
        took < Duration::from_secs(2),
        "the shop learnt it after {took:?}"
    );
    assert_eq!(outcomes(&delivery), [pb::AttemptOutcome::Acknowledged]);
    let attempt = &delivery.attempts[0];
    assert_eq!(attempt.attempt, 1);
    assert!(attempt.start_time.is_some() && attempt.latency_ms >= 0);
    assert!(attempt.detail.is_empty());
    assert_eq!(delivery.cursor, revoked.cursor);

    // Applied, but the cursor did not pass it: the feed is read in order.
    let status = feed_status(stack).await?;
    assert!(
        status.cursor.parse::<i64>()? < revoked.cursor.parse::<i64>()?,
        "the cursor moved to {} (revocation at {})",
        status.cursor,
        revoked.cursor
    );
    assert!(status
        .recent
        .iter()
        .any(|e| e.event_id == revoked.event_id && e.outcome == "APPLIED"));

    // The link comes back; the feed reads the event again, applies nothing
    // twice, and the cursor passes it.
    stack.resume_payment_link()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = feed_status(stack).await?;
        if status.cursor.parse::<i64>()? >= revoked.cursor.parse::<i64>()? {
            let times = status
                .recent
                .iter()
                .filter(|e| e.event_id == revoked.event_id)
                .count();
            assert_eq!(times, 1, "recorded once");
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the feed never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn a_notification_twice_or_late_changes_the_shop_once_and_only_payment_svc_may_send_one(
    stack: &Stack,
) -> R {
    let (mut shop, mut feed, created) = card_on_file_applied(stack, "bo").await?;
    let mut payment_svc = notifications_as(stack, "payment-svc").await?;

    // A revocation older than the version the shop applied (made up here:
    // it would clear the card if it were applied) changes nothing.
    let mut stale = created.clone();
    stale.event_id = "evt_made_up_stale_revocation".into();
    stale.r#type = pb::EventType::BindingRevoked as i32;
    stale.resource_version = created.resource_version - 1;
    if let Some(pb::event::Resource::Binding(b)) = stale.resource.as_mut() {
        b.status = pb::BindingStatus::Revoked as i32;
    }
    payment_svc
        .notify(mpb::NotifyRequest {
            event: Some(stale.clone()),
            attempt: 1,
        })
        .await?;
    assert!(
        card_on_file(&mut shop, "bo").await?,
        "a stale event changed the shop"
    );
    let recorded = feed_status(stack).await?;
    let stale_record = recorded
        .recent
        .iter()
        .find(|e| e.event_id == stale.event_id)
        .expect("recorded");
    assert_eq!(stale_record.outcome, "STALE");

    // The real revocation, delivered three times: applied once.
    let binding_id = end_at_payment_svc(stack, "bo").await?;
    let revoked = event_of(&mut feed, pb::EventType::BindingRevoked, &binding_id).await?;
    for attempt in 1..=3 {
        payment_svc
            .notify(mpb::NotifyRequest {
                event: Some(revoked.clone()),
                attempt,
            })
            .await?;
    }
    assert!(!card_on_file(&mut shop, "bo").await?);
    let recorded = feed_status(stack).await?;
    assert_eq!(
        recorded
            .recent
            .iter()
            .filter(|e| e.event_id == revoked.event_id)
            .count(),
        1
    );

    // Only payment-svc's certificate may notify: not an operator's, not a
    // merchant's (both from CAs merchant-svc trusts).
    for identity in [OPERATOR, SHOP_A] {
        let err = notifications_as(stack, identity)
            .await?
            .notify(mpb::NotifyRequest {
                event: Some(revoked.clone()),
                attempt: 1,
            })
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Code::PermissionDenied, "{identity}");
        assert_eq!(reason(&err), "CLIENT_NOT_ALLOWED");
    }
    // And payment-svc may call nothing else of the shop's.
    let err = mpb::merchant_service_client::MerchantServiceClient::new(
        paybind_tests::channel_to(stack.merchant_addr()?, "payment-svc").await?,
    )
    .get_event_feed(mpb::GetEventFeedRequest { page_size: 1 })
    .await
    .expect_err("payment-svc is not an operator");
    assert_eq!(err.code(), Code::PermissionDenied);

    // A notification without an event is refused, and changes nothing.
    let err = payment_svc
        .notify(mpb::NotifyRequest {
            event: None,
            attempt: 1,
        })
        .await
        .expect_err("no event");
    assert_eq!(err.code(), Code::InvalidArgument);
    Ok(())
}

async fn an_event_committed_while_the_shop_was_down_is_delivered_after_payment_svc_restarts(
    stack: &Stack,
) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    shop_user_with_card(stack, &mut shop, "cy", VISA).await?;
    stack.stop_merchant().await?;
    let binding_id = end_at_payment_svc(stack, "cy").await?;
    let mut feed = stack.events_client(SHOP_A).await?;
    let revoked = event_of(&mut feed, pb::EventType::BindingRevoked, &binding_id).await?;
    // The first attempt finds nobody; payment-svc then goes down.
    let failed_once =
        delivery_when(&mut feed, &revoked.event_id, |d| !d.attempts.is_empty()).await?;
    assert_eq!(outcomes(&failed_once), [pb::AttemptOutcome::Unreachable]);
    assert_eq!(failed_once.status, pb::DeliveryStatus::Pending as i32);
    assert!(failed_once.next_attempt_time.is_some());
    stack.stop_payment().await?;

    // The shop comes back unable to read the feed (its link is cut), so
    // only the push can tell it; payment-svc restarts and pushes.
    stack.pause_payment_link()?;
    stack.restart_merchant().await?;
    stack.restart_payment().await?;
    let mut feed = stack.events_client(SHOP_A).await?;
    let delivery = delivery_when(&mut feed, &revoked.event_id, delivered).await?;
    assert_eq!(
        outcomes(&delivery),
        [
            pb::AttemptOutcome::Unreachable,
            pb::AttemptOutcome::Acknowledged
        ]
    );
    until_card_forgotten(stack, "cy", Duration::from_secs(5)).await?;
    stack.resume_payment_link()?;
    Ok(())
}

async fn attempts_follow_the_schedule_are_kept_and_end_failed(stack: &Stack) -> R {
    // A shop that refuses every notification.
    let recorder = start_recorder(stack, u32::MAX).await?;
    let (mut feed, _, created) = bound(stack, "dee").await?;
    // The tests' schedule: at once, then 1 s and 1 s later, then given up.
    let failed = delivery_when(&mut feed, &created.event_id, |d| {
        d.status == pb::DeliveryStatus::Failed as i32
    })
    .await?;
    assert_eq!(outcomes(&failed), [pb::AttemptOutcome::Refused; 3]);
    assert!(failed.next_attempt_time.is_none());
    let starts: Vec<i64> = failed
        .attempts
        .iter()
        .map(|a| {
            a.start_time
                .as_ref()
                .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
                .unwrap()
        })
        .collect();
    for pair in starts.windows(2) {
        assert!(pair[1] - pair[0] >= 1000, "retried too soon: {starts:?}");
    }
    for (i, a) in failed.attempts.iter().enumerate() {
        assert_eq!(a.attempt, i as i32 + 1);
        assert!(a.detail.contains("refuses this attempt"), "{}", a.detail);
    }
    let received: Vec<i32> = recorder
        .calls()
        .iter()
        .filter(|c| c.event_id == created.event_id)
        .map(|c| c.attempt)
        .collect();
    assert_eq!(received, [1, 2, 3], "each attempt sent once");

    // Listed among the failed ones, with nothing of another merchant.
    let listed = feed
        .list_deliveries(pb::ListDeliveriesRequest {
            status: pb::DeliveryStatus::Failed as i32,
            after_cursor: String::new(),
            page_size: 100,
        })
        .await?
        .into_inner();
    assert!(listed
        .deliveries
        .iter()
        .any(|d| d.event_id == created.event_id));
    assert!(listed
        .deliveries
        .iter()
        .all(|d| d.status == pb::DeliveryStatus::Failed as i32));
    let err = stack
        .events_client(paybind_tests::SHOP_B)
        .await?
        .get_delivery(pb::GetDeliveryRequest {
            event_id: created.event_id.clone(),
        })
        .await
        .expect_err("another merchant's");
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(reason(&err), "DELIVERY_NOT_FOUND");
    let err = feed
        .list_deliveries(pb::ListDeliveriesRequest {
            status: 99,
            after_cursor: "x".into(),
            page_size: 1000,
        })
        .await
        .expect_err("bad request");
    assert_eq!(err.code(), Code::InvalidArgument);
    Ok(())
}

async fn a_resources_events_arrive_in_order(stack: &Stack) -> R {
    // Each event's first attempt is refused: the next event of the same
    // binding must wait until the earlier one is acknowledged.
    let recorder = start_recorder(stack, 1).await?;
    let (mut feed, binding, _) = bound(stack, "eli").await?;
    let binding_id = end_at_payment_svc(stack, "eli").await?;
    assert_eq!(binding_id, binding.binding_id);
    let revoked = event_of(&mut feed, pb::EventType::BindingRevoked, &binding_id).await?;
    delivery_when(&mut feed, &revoked.event_id, delivered).await?;
    let calls: Vec<_> = recorder
        .calls()
        .into_iter()
        .filter(|c| c.resource_id == binding_id)
        .collect();
    // The creation: refused, then acknowledged; only then the revocation.
    let first_revocation = calls
        .iter()
        .position(|c| c.event_id == revoked.event_id)
        .expect("revocation sent");
    let creation_acked = calls
        .iter()
        .position(|c| c.event_id != revoked.event_id && c.acknowledged)
        .expect("creation acknowledged");
    assert!(creation_acked < first_revocation, "{calls:#?}");
    let versions: Vec<i64> = calls.iter().map(|c| c.resource_version).collect();
    assert!(versions.windows(2).all(|w| w[0] <= w[1]), "{calls:#?}");
    Ok(())
}

async fn two_replicas_deliver_each_attempt_once(stack: &Stack) -> R {
    let recorder = start_recorder(stack, 0).await?;
    let _replica = stack.start_replica().await?;
    let mut c = stack.client(SHOP_A).await?;
    let mut bindings = Vec::new();
    for user in ["r1", "r2", "r3", "r4"] {
        bindings.push((user, bind_card(stack, &mut c, user, VISA).await?));
    }
    for (i, (user, binding)) in bindings.iter().enumerate() {
        for n in 0..3 {
            paybind_tests::fixtures::pay(&mut c, binding, user, 100 + n, &format!("k-{i}-{n}"))
                .await?;
        }
    }
    // Each binding: created, its session completed, three payments.
    let mut feed = stack.events_client(SHOP_A).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let events = loop {
        let events = all_events(&mut feed).await?;
        if events.len() >= 4 * 5 || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(events.len(), 4 * 5);
    for e in &events {
        delivery_when(&mut feed, &e.event_id, delivered).await?;
    }
    let calls = recorder.calls();
    for e in &events {
        let sent: Vec<i32> = calls
            .iter()
            .filter(|c| c.event_id == e.event_id)
            .map(|c| c.attempt)
            .collect();
        assert_eq!(sent, [1], "{} sent {sent:?}", e.event_id);
    }
    Ok(())
}

async fn an_attempt_cut_off_by_a_stop_is_made_again_after_its_lease(stack: &Stack) -> R {
    let recorder = start_recorder(stack, 0).await?;
    let (mut feed, _, created) = bound(stack, "fay").await?;
    delivery_when(&mut feed, &created.event_id, delivered).await?;
    stack.stop_payment().await?;
    // As if it had never been delivered, and a replica then claimed it
    // (for 1.5 s) and died before the answer.
    let db = stack.payment_db_url();
    let seq: i64 = created.cursor.parse()?;
    paybind_tests::execute_sql(
        &db,
        &format!("DELETE FROM delivery_attempts WHERE seq = {seq}"),
    )
    .await?;
    paybind_tests::execute_sql(
        &db,
        &format!(
            "UPDATE deliveries SET status = 'PENDING', attempts = 0, next_attempt_ms = 0, \
             finished_ms = NULL WHERE seq = {seq}"
        ),
    )
    .await?;
    let store = payment_svc::store::connect(&db, 2).await?;
    let now = paybind_shared::clock::now_ms();
    let claimed = store.claim_deliveries(now, now + 1500, 100).await?;
    let mine: Vec<_> = claimed.iter().filter(|d| d.event.seq == seq).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].attempt, 1);
    // Claimed: no one else takes it while the lease runs.
    assert!(store
        .claim_deliveries(now, now + 1500, 100)
        .await?
        .iter()
        .all(|d| d.event.seq != seq));
    drop(store);
    let sent_before = recorder.calls().len();

    stack.restart_payment().await?;
    let mut feed = stack.events_client(SHOP_A).await?;
    let delivery = delivery_when(&mut feed, &created.event_id, delivered).await?;
    assert_eq!(
        outcomes(&delivery),
        [
            pb::AttemptOutcome::Abandoned,
            pb::AttemptOutcome::Acknowledged
        ]
    );
    let resent: Vec<i32> = recorder.calls()[sent_before..]
        .iter()
        .filter(|c| c.event_id == created.event_id)
        .map(|c| c.attempt)
        .collect();
    assert_eq!(resent, [2]);
    Ok(())
}

async fn an_operator_ends_a_binding_and_the_shop_is_told(stack: &Stack) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    shop_user_with_card(stack, &mut shop, "gil", VISA).await?;
    let binding = active_binding(stack, "gil").await?;
    stack
        .admin(payment_svc::admin::MerchantCommand::RevokeBinding {
            id: SHOP_A.into(),
            binding_id: binding.binding_id.clone(),
            reason: "card reported stolen".into(),
        })
        .await?;
    until_card_forgotten(stack, "gil", Duration::from_secs(5)).await?;
    let mut feed = stack.events_client(SHOP_A).await?;
    let revoked = event_of(
        &mut feed,
        pb::EventType::BindingRevoked,
        &binding.binding_id,
    )
    .await?;
    let Some(pb::event::Resource::Binding(b)) = revoked.resource else {
        anyhow::bail!("a binding event without its binding");
    };
    assert_eq!(b.revoked_by, pb::RevokedBy::Operator as i32);
    assert_eq!(b.revoke_reason, "card reported stolen");
    let err = paybind_tests::fixtures::pay(
        &mut stack.client(SHOP_A).await?,
        &binding,
        "gil",
        100,
        "k-gil",
    )
    .await
    .expect_err("the token pays no more");
    assert_eq!(reason(&err), "BINDING_REVOKED");
    // Another merchant's binding is not the operator's to end by mistake.
    let err = stack
        .admin(payment_svc::admin::MerchantCommand::RevokeBinding {
            id: paybind_tests::SHOP_B.into(),
            binding_id: binding.binding_id.clone(),
            reason: "wrong merchant".into(),
        })
        .await
        .expect_err("not SHOP_B's binding");
    assert!(err.to_string().contains("has no binding"), "{err}");
    Ok(())
}

/// Binds three users at SHOP_A, waits until every event so far is
/// delivered to `recorder`, then makes their deliveries due again at once
/// (as if never made) while payment-svc is down: the first claim after it
/// restarts finds them all. The events made due again.
async fn all_due_at_once(stack: &Stack, recorder: &Recorder) -> anyhow::Result<Vec<pb::Event>> {
    for user in ["b1", "b2", "b3"] {
        bound(stack, user).await?;
    }
    let mut feed = stack.events_client(SHOP_A).await?;
    let events = all_events(&mut feed).await?;
    anyhow::ensure!(events.len() >= 3, "{events:?}");
    for e in &events {
        delivery_when(&mut feed, &e.event_id, delivered).await?;
    }
    anyhow::ensure!(!recorder.calls().is_empty());
    stack.stop_payment().await?;
    let db = stack.payment_db_url();
    let seqs: Vec<String> = events.iter().map(|e| e.cursor.clone()).collect();
    let seqs = seqs.join(", ");
    paybind_tests::execute_sql(
        &db,
        &format!("DELETE FROM delivery_attempts WHERE seq IN ({seqs})"),
    )
    .await?;
    paybind_tests::execute_sql(
        &db,
        &format!(
            "UPDATE deliveries SET status = 'PENDING', attempts = 0, next_attempt_ms = 0, \
             finished_ms = NULL WHERE seq IN ({seqs})"
        ),
    )
    .await?;
    Ok(events)
}

/// Each of `events` delivered again with one acknowledged attempt, the
/// first; what `recorder` was sent of them since `since`.
async fn delivered_again(
    stack: &Stack,
    recorder: &Recorder,
    events: &[pb::Event],
    since: usize,
) -> anyhow::Result<Vec<paybind_tests::RecordedCall>> {
    let mut feed = stack.events_client(SHOP_A).await?;
    for e in events {
        let delivery = delivery_when(&mut feed, &e.event_id, delivered).await?;
        assert_eq!(outcomes(&delivery), [pb::AttemptOutcome::Acknowledged]);
        assert_eq!(delivery.attempts[0].attempt, 1);
    }
    let calls = recorder.calls()[since..].to_vec();
    for e in events {
        let sent: Vec<i32> = calls
            .iter()
            .filter(|c| c.event_id == e.event_id && c.acknowledged)
            .map(|c| c.attempt)
            .collect();
        assert_eq!(sent, [1], "{} acknowledged {sent:?}", e.event_id);
    }
    Ok(calls)
}

async fn a_merchants_due_events_are_pushed_in_one_batch(stack: &Stack) -> R {
    let recorder = Recorder::start_batching().await?;
    stack
        .admin(payment_svc::admin::MerchantCommand::SetNotify {
            id: SHOP_A.into(),
            url: format!("https://localhost:{}", recorder.addr.port()),
            server_name: None,
        })
        .await?;
    let events = all_due_at_once(stack, &recorder).await?;
    let since = recorder.calls().len();
    stack.restart_payment().await?;
    let calls = delivered_again(stack, &recorder, &events, since).await?;
    // One call, holding every one of them.
    assert_eq!(calls.len(), events.len(), "{calls:#?}");
    assert!(calls.iter().all(|c| c.batch == events.len()), "{calls:#?}");
    Ok(())
}

async fn a_merchant_that_takes_no_batches_gets_each_event_alone(stack: &Stack) -> R {
    let recorder = start_recorder(stack, 0).await?;
    let events = all_due_at_once(stack, &recorder).await?;
    let since = recorder.calls().len();
    stack.restart_payment().await?;
    // Offered as a batch, answered UNIMPLEMENTED: each sent alone, once.
    let calls = delivered_again(stack, &recorder, &events, since).await?;
    assert_eq!(calls.len(), events.len(), "{calls:#?}");
    assert!(calls.iter().all(|c| c.batch == 0), "{calls:#?}");
    Ok(())
}

async fn a_notification_batch_is_applied_whole_or_refused_whole(stack: &Stack) -> R {
    let (mut shop, _, created) = card_on_file_applied(stack, "bea").await?;
    // Made up here: revocations older than the version the shop applied
    // (applied, each would clear the card), recorded as STALE.
    let stale = |id: &str| {
        let mut e = created.clone();
        e.event_id = id.into();
        e.r#type = pb::EventType::BindingRevoked as i32;
        e.resource_version = created.resource_version - 1;
        mpb::NotifyRequest {
            event: Some(e),
            attempt: 1,
        }
    };
    let mut payment_svc = notifications_as(stack, "payment-svc").await?;
    let recorded = |status: &mpb::GetEventFeedResponse, id: &str| {
        status.recent.iter().filter(|e| e.event_id == id).count()
    };

    // One malformed notification refuses the batch: nothing is applied.
    let err = payment_svc
        .notify_batch(mpb::NotifyBatchRequest {
            notifications: vec![
                stale("evt_made_up_batch_1"),
                mpb::NotifyRequest {
                    event: None,
                    attempt: 1,
                },
            ],
        })
        .await
        .expect_err("malformed");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(reason(&err), "MISSING_FIELD");
    assert_eq!(
        recorded(&feed_status(stack).await?, "evt_made_up_batch_1"),
        0
    );
    let err = payment_svc
        .notify_batch(mpb::NotifyBatchRequest {
            notifications: Vec::new(),
        })
        .await
        .expect_err("empty");
    assert_eq!(reason(&err), "INVALID_BATCH");

    // A whole batch, sent twice: each applied and recorded once.
    for _ in 0..2 {
        payment_svc
            .notify_batch(mpb::NotifyBatchRequest {
                notifications: vec![stale("evt_made_up_batch_1"), stale("evt_made_up_batch_2")],
            })
            .await?;
    }
    let status = feed_status(stack).await?;
    for id in ["evt_made_up_batch_1", "evt_made_up_batch_2"] {
        assert_eq!(recorded(&status, id), 1, "{id}");
        let record = status
            .recent
            .iter()
            .find(|e| e.event_id == id)
            .expect("recorded");
        assert_eq!(record.outcome, "STALE");
    }
    assert!(
        card_on_file(&mut shop, "bea").await?,
        "a stale event changed the shop"
    );

    // Only payment-svc may send one.
    let err = notifications_as(stack, OPERATOR)
        .await?
        .notify_batch(mpb::NotifyBatchRequest {
            notifications: vec![stale("evt_made_up_batch_3")],
        })
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::PermissionDenied);
    Ok(())
}
