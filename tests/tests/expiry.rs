//! Bindings expire with their card: a card valid through this month pays
//! today; once the month is over (the expiry pass, run here at the first
//! instant of next month) the binding is EXPIRED with an event, the shop
//! forgets the card, and a payment is refused with CARD_EXPIRED before the
//! card network is asked. Binding the same card again with its new expiry
//! brings the binding, and its token, back. Both databases.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use paybind_shared::clock;
use paybind_tests::{
    fixtures::{bind_with_card, card, card_on_file, pay, shop_user_with_card, VISA},
    mpb, pb, reason, Stack, OPERATOR, SHOP_A,
};

type R = anyhow::Result<()>;

paybind_tests::on_both_backends!(with_merchant = true;
    a_binding_expires_with_its_card_and_comes_back_when_bound_again,
    a_session_that_expires_unfinished_is_told_once,
);

/// This month in the limits' time zone (UTC+8 in the tests), and the unix
/// ms of the first instant of the next.
fn this_month_and_next_start(stack: &Stack) -> (i32, u8, i64) {
    let offset = stack.payment_settings().limits.utc_offset_minutes;
    let today = clock::local_date(clock::now_ms(), offset);
    let (year, month) = if today.month == 12 {
        (today.year + 1, 1)
    } else {
        (today.year, today.month + 1)
    };
    let first = time::Date::from_calendar_date(year, time::Month::try_from(month).unwrap(), 1)
        .unwrap()
        .midnight()
        .assume_utc()
        .unix_timestamp()
        * 1000
        - i64::from(offset) * 60_000;
    (today.year, today.month, first)
}

async fn a_binding_expires_with_its_card_and_comes_back_when_bound_again(stack: &Stack) -> R {
    let (year, month, next_month) = this_month_and_next_start(stack);
    let services = stack.payment_services();
    let mut c = stack.client(SHOP_A).await?;
    // A card valid through this month, bound through the shop.
    let mut shop = stack.merchant_client(OPERATOR).await?;
    shop.create_user(mpb::CreateUserRequest {
        user_id: "lin".into(),
        display_name: "Zhang San".into(),
        phone: paybind_tests::fixtures::PHONE.into(),
    })
    .await?;
    let expiring = pb::CardInfo {
        expiry_month: i32::from(month),
        expiry_year: year,
        ..card(VISA)
    };
    let started = shop
        .start_binding(mpb::StartBindingRequest {
            user_id: "lin".into(),
            presentation: pb::Presentation::Redirect as i32,
            return_url: String::new(),
        })
        .await?
        .into_inner();
    shop.submit_shopper_info(mpb::SubmitShopperInfoRequest {
        session_id: started.session_id.clone(),
        shopper: Some(paybind_tests::fixtures::shopper("Zhang San")),
        card: Some(expiring),
    })
    .await?;
    shop.verify_shopper_code(mpb::VerifyShopperCodeRequest {
        session_id: started.session_id,
        code: stack.last_code(paybind_tests::fixtures::PHONE)?,
    })
    .await?;
    assert!(card_on_file(&mut shop, "lin").await?);
    let binding = c
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: "lin".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .bindings
        .pop()
        .expect("lin's binding");
    // Nothing expires this month, and the card pays.
    assert_eq!(services.expire_bindings(clock::now_ms()).await?, 0);
    pay(&mut c, &binding, "lin", 100, "before").await?;
    assert_eq!(stack.acquirer.approved_charges(), 1);

    // Another user of the shop holds the same card through merchant-svc,
    // with a later expiry: it is not touched.
    shop_user_with_card(stack, &mut shop, "mo", VISA).await?;

    // The month is over.
    assert_eq!(services.expire_bindings(next_month).await?, 1);
    assert_eq!(services.expire_bindings(next_month).await?, 0, "once");
    let err = pay(&mut c, &binding, "lin", 100, "after")
        .await
        .expect_err("an expired card pays no more");
    assert_eq!(reason(&err), "CARD_EXPIRED");
    assert_eq!(
        stack.acquirer.approved_charges(),
        1,
        "the network was not asked"
    );
    let listed = c
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: "lin".into(),
            include_revoked: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .bindings;
    assert_eq!(listed[0].status, pb::BindingStatus::Expired as i32);
    assert_eq!(listed[0].revoked_by, pb::RevokedBy::Expiry as i32);

    // The merchant is told.
    let mut feed = stack.events_client(SHOP_A).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let expired_event = loop {
        let events = feed
            .list_events(pb::ListEventsRequest {
                after_cursor: String::new(),
                page_size: 100,
            })
            .await?
            .into_inner()
            .events;
        let found = events.into_iter().find(|e| {
            e.r#type == pb::EventType::BindingRevoked as i32 && e.resource_id == binding.binding_id
        });
        if let Some(found) = found {
            break found;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no event for the expired binding"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let Some(pb::event::Resource::Binding(b)) = expired_event.resource else {
        panic!("a binding event carries the binding");
    };
    assert_eq!(b.status, pb::BindingStatus::Expired as i32);
    assert_eq!(b.revoked_by, pb::RevokedBy::Expiry as i32);
    // merchant-svc forgets lin's card within a second, and keeps mo's.
    let started = Instant::now();
    while card_on_file(&mut shop, "lin").await? {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1),
            "the shop kept the expired card"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mo = shop
        .get_user(mpb::GetUserRequest {
            user_id: "mo".into(),
        })
        .await?
        .into_inner()
        .user
        .unwrap();
    assert!(mo.card.is_some());

    // The shopper binds the same card again, with its new expiry: the same
    // binding, active again, and the old token pays.
    let renewed = bind_with_card(
        stack,
        &mut c,
        "lin",
        pb::CardInfo {
            expiry_year: year + 3,
            ..card(VISA)
        },
        "bind-lin-renewed",
    )
    .await?;
    assert_eq!(renewed.binding_id, binding.binding_id);
    assert_eq!(renewed.status, pb::BindingStatus::Active as i32);
    pay(&mut c, &binding, "lin", 100, "renewed").await?;
    assert_eq!(stack.acquirer.approved_charges(), 2);
    Ok(())
}

async fn a_session_that_expires_unfinished_is_told_once(stack: &Stack) -> R {
    let services = stack.payment_services();
    let mut shop = stack.merchant_client(OPERATOR).await?;
    shop.create_user(mpb::CreateUserRequest {
        user_id: "kim".into(),
        display_name: "Kim".into(),
        phone: paybind_tests::fixtures::PHONE.into(),
    })
    .await?;
    // No card on file: the checkout sends BindAndPay and waits for the shopper.
    let order = shop
        .checkout(mpb::CheckoutRequest {
            user_id: "kim".into(),
            amount: paybind_tests::cny(800),
            description: "Oolong".into(),
            presentation: pb::Presentation::Redirect as i32,
            return_url: String::new(),
            idempotency_key: "co-kim".into(),
        })
        .await?
        .into_inner()
        .order
        .unwrap();
    assert_eq!(order.status, mpb::OrderStatus::AwaitingShopper as i32);
    assert_eq!(services.tell_expired_sessions(clock::now_ms()).await?, 0);
    // The shopper never comes: the session's time runs out.
    paybind_tests::execute_sql(
        &stack.payment_db_url(),
        &format!(
            "UPDATE bind_sessions SET expires_ms = 1 WHERE id = '{}'",
            order.session_id
        ),
    )
    .await?;
    assert_eq!(services.tell_expired_sessions(clock::now_ms()).await?, 1);
    assert_eq!(
        services.tell_expired_sessions(clock::now_ms()).await?,
        0,
        "once"
    );
    let mut feed = stack.events_client(SHOP_A).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let events = feed
            .list_events(pb::ListEventsRequest::default())
            .await?
            .into_inner()
            .events;
        let told: Vec<_> = events
            .iter()
            .filter(|e| e.resource_id == order.session_id)
            .collect();
        if let Some(e) = told.first() {
            assert_eq!(told.len(), 1);
            assert_eq!(e.r#type, pb::EventType::BindSessionExpired as i32);
            let Some(pb::event::Resource::BindSession(s)) = &e.resource else {
                panic!("a session event carries the session");
            };
            assert_eq!(s.status, pb::BindSessionStatus::Expired as i32);
            assert_eq!(
                s.payment_details
                    .as_ref()
                    .map(|p| p.merchant_order_id.as_str()),
                Some(order.order_id.as_str())
            );
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no event for the expired session"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The shop cancels the order it was paying.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = shop
            .get_order(mpb::GetOrderRequest {
                order_id: order.order_id.clone(),
            })
            .await?
            .into_inner()
            .order
            .unwrap();
        if now.status == mpb::OrderStatus::Cancelled as i32 {
            assert_eq!(now.decline_reason, "SESSION_EXPIRED");
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the order was not cancelled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
