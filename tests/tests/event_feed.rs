//! payment-svc's event feed, read by a merchant's own client and consumed by
//! merchant-svc: every change in order, each merchant only its own; the same
//! sequence listed and streamed; nothing lost across a restart or between
//! replicas; and the shop learning of a binding ended on the payment side
//! within a second, or on its return if it was down. Every scenario on
//! SQLite and on PostgreSQL.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use paybind_tests::{
    cny,
    fixtures::{bind_card, bind_card_with_key, card_on_file, pay, shop_user_with_card, VISA},
    mpb, pb, reason, Stack, OPERATOR, SHOP_A, SHOP_B,
};
use tonic::{transport::Channel, Code};

type R = anyhow::Result<()>;
type Feed = pb::event_service_client::EventServiceClient<Channel>;

const DECLINES_CHARGES: &str = "4000000000000341";

paybind_tests::on_both_backends!(with_merchant = false;
    every_change_is_told_in_order_to_its_merchant_only,
    listed_and_streamed_feeds_are_the_same_sequence,
    events_committed_before_a_crash_are_sequenced_after_restart,
    bad_cursors_and_page_sizes_are_refused,
    a_cursor_older_than_the_feed_keeps_is_refused,
);

/// Replicas share a PostgreSQL database; a SQLite file belongs to one
/// process (README: Configuration), so this runs on PostgreSQL only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_replicas_write_and_sequence_one_feed() -> R {
    paybind_tests::run_scenario(paybind_tests::Backend::Postgres, false, |s| {
        Box::pin(two_replicas_write_and_sequence_one_feed(s))
    })
    .await
}

mod with_merchant {
    paybind_tests::on_both_backends!(with_merchant = true;
        a_binding_ended_at_payment_svc_leaves_the_shop_within_a_second,
        a_shop_that_was_down_catches_up_on_its_return,
        the_shop_shows_its_cursor_and_the_events_it_applied,
    );
    use super::*;
}

// ---------------------------------------------------------------- helpers

fn event_type(e: &pb::Event) -> pb::EventType {
    pb::EventType::try_from(e.r#type).unwrap_or(pb::EventType::Unspecified)
}

/// Every event after `cursor`, page by page (`page_size` each).
async fn list_all(feed: &mut Feed, cursor: &str, page_size: i32) -> anyhow::Result<Vec<pb::Event>> {
    let mut all = Vec::new();
    let mut cursor = cursor.to_owned();
    loop {
        let page = feed
            .list_events(pb::ListEventsRequest {
                after_cursor: cursor.clone(),
                page_size,
            })
            .await?
            .into_inner();
        let n = page.events.len();
        if let Some(last) = page.events.last() {
            assert_eq!(page.next_cursor, last.cursor);
        } else {
            assert_eq!(
                page.next_cursor,
                if cursor.is_empty() { "0" } else { &cursor }
            );
        }
        all.extend(page.events);
        cursor = page.next_cursor;
        if n < page_size as usize {
            return Ok(all);
        }
    }
}

/// Waits (up to 5 s) until the feed holds at least `n` events.
async fn wait_for_events(feed: &mut Feed, n: usize) -> anyhow::Result<Vec<pb::Event>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let events = list_all(feed, "", 100).await?;
        if events.len() >= n || Instant::now() > deadline {
            return Ok(events);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn binding_of(stack: &Stack, user: &str) -> anyhow::Result<pb::Binding> {
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

async fn unbind_at_payment_svc(stack: &Stack, user: &str) -> anyhow::Result<pb::Binding> {
    let binding = binding_of(stack, user).await?;
    let mut payments = stack.client(SHOP_A).await?;
    Ok(payments
        .unbind(pb::UnbindRequest {
            binding_token: binding.binding_token,
            merchant_user_id: user.into(),
            reason: "ended by the shopper".into(),
        })
        .await?
        .into_inner()
        .binding
        .expect("binding"))
}

/// How long until the shop has no card on file for `user` (at most 10 s).
async fn until_card_forgotten(
    shop: &mut mpb::merchant_service_client::MerchantServiceClient<Channel>,
    user: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while card_on_file(shop, user).await? {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "the shop still has the card after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(started.elapsed())
}

// -------------------------------------------------------------- scenarios

async fn every_change_is_told_in_order_to_its_merchant_only(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let binding = bind_card(stack, &mut c, "ada", VISA).await?;
    let paid = pay(&mut c, &binding, "ada", 1_500, "k-1").await?;
    let declined = bind_card_with_key(stack, &mut c, "bo", DECLINES_CHARGES, "bind-bo").await?;
    let refused = pay(&mut c, &declined, "bo", 700, "k-2").await?;
    assert_eq!(refused.status, pb::PaymentStatus::Declined as i32);
    c.refund(pb::RefundRequest {
        payment_id: paid.payment_id.clone(),
        amount: cny(500),
        reason: "one cup less".into(),
        idempotency_key: "r-1".into(),
    })
    .await?;
    // The same card bound again by the same user: the binding is updated.
    let again = bind_card_with_key(stack, &mut c, "ada", VISA, "bind-ada-again").await?;
    assert_eq!(again.binding_id, binding.binding_id);
    unbind_at_payment_svc(stack, "ada").await?;

    let mut feed = stack.events_client(SHOP_A).await?;
    let events = wait_for_events(&mut feed, 10).await?;
    let kinds: Vec<pb::EventType> = events.iter().map(event_type).collect();
    use pb::EventType as T;
    assert_eq!(
        kinds,
        [
            T::BindingCreated,
            T::BindSessionCompleted,
            T::PaymentSucceeded,
            T::BindingCreated,
            T::BindSessionCompleted,
            T::PaymentDeclined,
            T::RefundSucceeded,
            T::BindingUpdated,
            T::BindSessionCompleted,
            T::BindingRevoked,
        ]
    );
    // Cursors only grow; ids are unique.
    let cursors: Vec<i64> = events.iter().map(|e| e.cursor.parse().unwrap()).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    let ids: BTreeSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), events.len());
    // A resource's versions grow with each change.
    let mut last: HashMap<&str, i64> = HashMap::new();
    for e in &events {
        if let Some(before) = last.insert(&e.resource_id, e.resource_version) {
            assert!(before < e.resource_version, "{e:?}");
        }
    }
    // Each carries the resource after the change.
    let Some(pb::event::Resource::Payment(p)) = &events[2].resource else {
        panic!("a payment event carries the payment: {:?}", events[2]);
    };
    assert_eq!(p.payment_id, paid.payment_id);
    assert_eq!(p.amount, cny(1_500));
    assert_eq!(p.merchant_order_id, "order-k-1");
    let Some(pb::event::Resource::Payment(p)) = &events[5].resource else {
        panic!("a payment event carries the payment");
    };
    assert_eq!(p.decline_reason, "DO_NOT_HONOR");
    let Some(pb::event::Resource::Refund(r)) = &events[6].resource else {
        panic!("a refund event carries the refund");
    };
    assert_eq!(
        (r.amount.clone(), r.payment_id.clone()),
        (cny(500), paid.payment_id)
    );
    let Some(pb::event::Resource::Binding(b)) = &events[9].resource else {
        panic!("a binding event carries the binding");
    };
    assert_eq!(b.binding_id, binding.binding_id);
    assert_eq!(b.status, pb::BindingStatus::Revoked as i32);
    assert_eq!(b.revoked_by, pb::RevokedBy::Merchant as i32);
    assert_eq!(b.revoke_reason, "ended by the shopper");
    assert!(b.binding_token.is_empty(), "the feed carries no token");
    let Some(pb::event::Resource::BindSession(s)) = &events[1].resource else {
        panic!("a session event carries the session");
    };
    assert_eq!(
        s.binding.as_ref().map(|b| b.binding_id.as_str()),
        Some(binding.binding_id.as_str())
    );

    // Another merchant sees none of it.
    let mut other = stack.events_client(SHOP_B).await?;
    assert!(list_all(&mut other, "", 100).await?.is_empty());
    // Reading on from the middle gives the rest.
    let rest = list_all(&mut feed, &events[6].cursor, 2).await?;
    assert_eq!(rest, events[7..].to_vec());
    Ok(())
}

async fn listed_and_streamed_feeds_are_the_same_sequence(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let binding = bind_card(stack, &mut c, "cai", VISA).await?;
    pay(&mut c, &binding, "cai", 100, "k-a").await?;
    let mut feed = stack.events_client(SHOP_A).await?;
    let before = wait_for_events(&mut feed, 3).await?;
    assert_eq!(before.len(), 3);

    let mut stream = feed
        .stream_events(pb::StreamEventsRequest {
            after_cursor: String::new(),
        })
        .await?
        .into_inner();
    let mut streamed = Vec::new();
    // Replayed from the cursor…
    while streamed.len() < 3 {
        let item = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await??
            .expect("the stream stays open");
        if let Some(pb::stream_events_response::Item::Event(e)) = item.item {
            streamed.push(e);
        }
    }
    // …then followed live.
    pay(&mut c, &binding, "cai", 200, "k-b").await?;
    unbind_at_payment_svc(stack, "cai").await?;
    while streamed.len() < 5 {
        let item = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await??
            .expect("the stream stays open");
        if let Some(pb::stream_events_response::Item::Event(e)) = item.item {
            streamed.push(e);
        }
    }
    let listed = list_all(&mut feed, "", 2).await?;
    assert_eq!(streamed, listed);
    assert_eq!(event_type(&listed[4]), pb::EventType::BindingRevoked);
    Ok(())
}

async fn events_committed_before_a_crash_are_sequenced_after_restart(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let binding = bind_card(stack, &mut c, "dai", VISA).await?;
    let mut feed = stack.events_client(SHOP_A).await?;
    let seen = wait_for_events(&mut feed, 2).await?;
    assert_eq!(seen.len(), 2);
    let cursor = seen[1].cursor.clone();
    // payment-svc stops between committing a change and giving its event a
    // cursor: the events are in the table, unsequenced.
    pay(&mut c, &binding, "dai", 300, "k-x").await?;
    stack.stop_payment().await?;
    let unsequenced = paybind_tests::execute_sql(
        &stack.payment_db_url(),
        &format!("UPDATE events SET seq = NULL WHERE seq IS NULL OR seq > {cursor}"),
    )
    .await?;
    assert_eq!(
        unsequenced, 1,
        "the payment's event was committed with the payment"
    );
    stack.restart_payment().await?;
    let mut feed = stack.events_client(SHOP_A).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let after = list_all(&mut feed, &cursor, 100).await?;
        if !after.is_empty() || Instant::now() > deadline {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(after.len(), 1);
    assert_eq!(event_type(&after[0]), pb::EventType::PaymentSucceeded);
    Ok(())
}

async fn bad_cursors_and_page_sizes_are_refused(stack: &Stack) -> R {
    let mut feed = stack.events_client(SHOP_A).await?;
    for (cursor, page_size) in [("abc", 10), ("-1", 10), ("", 101), ("", -1)] {
        let err = feed
            .list_events(pb::ListEventsRequest {
                after_cursor: cursor.into(),
                page_size,
            })
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{cursor} {page_size}");
        assert_eq!(reason(&err), "INVALID_ARGUMENT");
    }
    let err = feed
        .stream_events(pb::StreamEventsRequest {
            after_cursor: "x".into(),
        })
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument);
    // A cursor past the end is an empty page, not an error.
    let page = feed
        .list_events(pb::ListEventsRequest {
            after_cursor: "999999".into(),
            page_size: 0,
        })
        .await?
        .into_inner();
    assert!(page.events.is_empty());
    assert_eq!(page.next_cursor, "999999");
    Ok(())
}

async fn two_replicas_write_and_sequence_one_feed(stack: &Stack) -> R {
    let replica = stack.start_replica().await?;
    let mut first = stack.client(SHOP_A).await?;
    let binding = bind_card(stack, &mut first, "han", VISA).await?;
    let second = pb::binding_service_client::BindingServiceClient::new(
        paybind_tests::channel_to(replica.addr, SHOP_A).await?,
    );
    // Payments through both replicas at once: both write events, both run
    // a sequencer.
    let mut calls = Vec::new();
    for i in 0..24 {
        let mut c = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let binding = binding.clone();
        calls.push(tokio::spawn(async move {
            pay(&mut c, &binding, "han", 10, &format!("r-{i}")).await
        }));
    }
    for call in calls {
        call.await??;
    }
    let mut feed = stack.events_client(SHOP_A).await?;
    let mut other = pb::event_service_client::EventServiceClient::new(
        paybind_tests::channel_to(replica.addr, SHOP_A).await?,
    );
    let events = wait_for_events(&mut feed, 26).await?;
    assert_eq!(events.len(), 26, "created, completed and 24 payments");
    let payments: BTreeSet<&str> = events
        .iter()
        .filter(|e| event_type(e) == pb::EventType::PaymentSucceeded)
        .map(|e| e.resource_id.as_str())
        .collect();
    assert_eq!(payments.len(), 24, "each payment told once");
    // Every cursor once, in order, the same through either replica.
    let cursors: Vec<i64> = events.iter().map(|e| e.cursor.parse().unwrap()).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    assert_eq!(list_all(&mut other, "", 7).await?, events);
    drop(replica);
    Ok(())
}

async fn a_binding_ended_at_payment_svc_leaves_the_shop_within_a_second(stack: &Stack) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    shop_user_with_card(stack, &mut shop, "eve", VISA).await?;
    assert!(card_on_file(&mut shop, "eve").await?);
    unbind_at_payment_svc(stack, "eve").await?;
    let took = until_card_forgotten(&mut shop, "eve").await?;
    assert!(
        took < Duration::from_secs(1),
        "the shop learnt it after {took:?}"
    );
    // The next checkout asks the shopper to bind again (BindAndPay), and
    // nothing is charged through the ended binding.
    let order = shop
        .checkout(mpb::CheckoutRequest {
            user_id: "eve".into(),
            amount: cny(900),
            description: "Green tea".into(),
            presentation: pb::Presentation::Embedded as i32,
            return_url: String::new(),
            idempotency_key: "co-eve".into(),
        })
        .await?
        .into_inner()
        .order
        .expect("order");
    assert_eq!(order.status, mpb::OrderStatus::AwaitingShopper as i32);
    assert_eq!(stack.acquirer.approved_charges(), 0);
    Ok(())
}

async fn a_shop_that_was_down_catches_up_on_its_return(stack: &Stack) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    shop_user_with_card(stack, &mut shop, "fan", VISA).await?;
    stack.stop_merchant().await?;
    unbind_at_payment_svc(stack, "fan").await?;
    stack.restart_merchant().await?;
    let mut shop = stack.merchant_client(OPERATOR).await?;
    until_card_forgotten(&mut shop, "fan").await?;
    Ok(())
}

async fn the_shop_shows_its_cursor_and_the_events_it_applied(stack: &Stack) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    shop_user_with_card(stack, &mut shop, "gu", VISA).await?;
    unbind_at_payment_svc(stack, "gu").await?;
    until_card_forgotten(&mut shop, "gu").await?;
    let mut feed = stack.events_client(SHOP_A).await?;
    let events = wait_for_events(&mut feed, 3).await?;
    let last = events.last().expect("events");
    // The status may trail the card by the record's commit: wait for it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        let status = shop
            .get_event_feed(mpb::GetEventFeedRequest { page_size: 0 })
            .await?
            .into_inner();
        if status.cursor == last.cursor || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.cursor, last.cursor);
    assert!(status.update_time.is_some());
    let applied: Vec<&str> = status.recent.iter().map(|e| e.event_id.as_str()).collect();
    for e in &events {
        assert!(
            applied.contains(&e.event_id.as_str()),
            "{} not applied",
            e.event_id
        );
    }
    let revoked = status
        .recent
        .iter()
        .find(|e| e.event_type == "EVENT_TYPE_BINDING_REVOKED")
        .expect("the revocation is listed");
    assert_eq!(revoked.outcome, "APPLIED");
    // A reader may look; the storefront role may not.
    let err = stack
        .merchant_client(paybind_tests::FINANCE)
        .await?
        .get_event_feed(mpb::GetEventFeedRequest { page_size: 0 })
        .await
        .expect_err("refund role only");
    assert_eq!(err.code(), Code::PermissionDenied);
    Ok(())
}

async fn a_cursor_older_than_the_feed_keeps_is_refused(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let binding = bind_card(stack, &mut c, "hal", VISA).await?;
    pay(&mut c, &binding, "hal", 300, "k-hal").await?;
    let mut feed = stack.events_client(SHOP_A).await?;
    let events = wait_for_events(&mut feed, 3).await?;
    // Everything is older than the cutoff: all but the newest event go.
    let now = paybind_shared::clock::now_ms();
    stack
        .payment_services()
        .store
        .purge(&payment_svc::domain::retention::PurgeCutoffs {
            sessions_expired_before_ms: 0,
            card_checks_before_ms: 0,
            velocity_before_ms: 0,
            events_before_ms: now + 1,
            shopper_logins_before_ms: 0,
        })
        .await?;
    let first = events[0].cursor.clone();
    let err = feed
        .list_events(pb::ListEventsRequest {
            after_cursor: first.clone(),
            page_size: 10,
        })
        .await
        .expect_err("events after it are gone");
    assert_eq!(err.code(), Code::OutOfRange);
    assert_eq!(reason(&err), "CURSOR_EXPIRED");
    let err = feed
        .stream_events(pb::StreamEventsRequest {
            after_cursor: first,
        })
        .await
        .expect_err("the stream refuses it too");
    assert_eq!(reason(&err), "CURSOR_EXPIRED");
    // From an empty cursor: what is kept, the newest event.
    let kept = list_all(&mut feed, "", 10).await?;
    assert_eq!(kept, events[events.len() - 1..].to_vec());
    let newest = kept[0].cursor.clone();
    assert!(list_all(&mut feed, &newest, 10).await?.is_empty());
    Ok(())
}
