//! The shopper's own page at the payment institution, in a real browser, on
//! both databases: the phone, a wrong code and the right one, every binding
//! under that phone across merchants, and one ended. The shop (merchant-svc)
//! forgets the card within a second, the ended token pays no more, and the
//! feed says the shopper ended it.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use paybind_tests::{
    browser::{Browser, DESKTOP},
    fixtures::{bind_card, card_on_file, pay, shop_user_with_card, PHONE, VISA},
    pb, reason, Backend, Stack, OPERATOR, SHOP_A, SHOP_B,
};

async fn a_shopper_ends_a_binding_on_the_payment_institutions_page(
    backend: Backend,
    test: &str,
) -> anyhow::Result<()> {
    let Some(stack) = Stack::start_with_merchant(backend).await? else {
        return Ok(());
    };
    let result = scenario(&stack, test).await;
    stack.stop().await?;
    result
}

async fn scenario(stack: &Stack, test: &str) -> anyhow::Result<()> {
    // The same shopper (one phone) has bound a card at two merchants: at
    // shop A through merchant-svc, at shop B directly.
    let mut shop = stack.merchant_client(OPERATOR).await?;
    shop_user_with_card(stack, &mut shop, "mei", VISA).await?;
    let mut b_client = stack.client(SHOP_B).await?;
    let at_b = bind_card(stack, &mut b_client, "mei-at-b", VISA).await?;
    let mut a_client = stack.client(SHOP_A).await?;
    let at_a = a_client
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: "mei".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .bindings
        .pop()
        .expect("shop A's binding");

    let Some(b) = Browser::open(test, DESKTOP).await? else {
        return Ok(());
    };
    let pages = stack.pages();
    b.goto(&format!("{pages}/my-bindings")).await?;
    b.wait_for("#phone-form").await?;
    b.shot("phone").await?;
    // A number that is not one is refused with what to fix.
    b.fill("#phone", "12345").await?;
    b.submit("#send-code").await?;
    assert!(b.text("#error").await?.contains("11 digits"));
    // A number with no binding gets the same answer, and no SMS.
    b.fill("#phone", "13900139000").await?;
    b.submit("#send-code").await?;
    b.wait_for("#code-form").await?;
    assert!(
        stack
            .outbox()
            .messages()
            .iter()
            .all(|m| m.to != "+8613900139000"),
        "no code to a number without bindings"
    );
    b.submit("#start-over").await?;
    b.fill("#phone", "138 0013 8000").await?;
    b.submit("#send-code").await?;
    b.wait_for("#code-form").await?;
    assert_eq!(b.text("#masked-phone").await?, "+86 138****8000");
    let code = stack.last_code(PHONE)?;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    b.fill("#code", wrong).await?;
    b.submit("#submit-code").await?;
    assert!(b.text("#notice").await?.contains("not right"));
    b.shot("wrong-code").await?;
    b.fill("#code", &code).await?;
    b.submit("#submit-code").await?;
    b.wait_for("#bindings").await?;
    b.shot("bindings").await?;
    let a_row = format!("#binding-{}", at_a.binding_id);
    let b_row = format!("#binding-{}", at_b.binding_id);
    assert!(b
        .text(&format!("{a_row} .merchant-name"))
        .await?
        .contains("shop-a"));
    assert!(b
        .text(&format!("{b_row} .merchant-name"))
        .await?
        .contains("shop-b"));
    assert!(b.text(&format!("{a_row} .card")).await?.ends_with("4242"));
    assert!(b
        .text(&format!("{a_row} .limits"))
        .await?
        .contains("per day"));

    // The shopper ends the binding with shop A.
    assert!(card_on_file(&mut shop, "mei").await?);
    b.submit(&format!("{a_row} .end")).await?;
    let ended_at = Instant::now();
    assert!(b.text("#notice").await?.contains("has ended"));
    assert!(
        !b.exists(&a_row).await?,
        "the ended binding is gone from the list"
    );
    assert!(b.exists(&b_row).await?, "the other merchant's stays");
    b.shot("ended").await?;
    // The shop knows within a second and forgets the card…
    while card_on_file(&mut shop, "mei").await? {
        anyhow::ensure!(
            ended_at.elapsed() < Duration::from_secs(1),
            "the shop still has the card a second after the shopper ended it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // …the token pays no more…
    let err = pay(&mut a_client, &at_a, "mei", 100, "after-end")
        .await
        .expect_err("the ended binding cannot pay");
    assert_eq!(reason(&err), "BINDING_REVOKED");
    assert_eq!(stack.acquirer.approved_charges(), 0);
    // …and the feed says who ended it.
    let mut feed = stack.events_client(SHOP_A).await?;
    let events = feed
        .list_events(pb::ListEventsRequest::default())
        .await?
        .into_inner()
        .events;
    let revoked = events
        .iter()
        .find_map(|e| match &e.resource {
            Some(pb::event::Resource::Binding(b))
                if e.r#type == pb::EventType::BindingRevoked as i32 =>
            {
                Some(b.clone())
            }
            _ => None,
        })
        .expect("a BINDING_REVOKED event");
    assert_eq!(revoked.binding_id, at_a.binding_id);
    assert_eq!(revoked.revoked_by, pb::RevokedBy::Shopper as i32);
    // Shop B's feed has no event about shop A's binding.
    let mut b_feed = stack.events_client(SHOP_B).await?;
    let b_events = b_feed
        .list_events(pb::ListEventsRequest::default())
        .await?
        .into_inner()
        .events;
    assert!(b_events.iter().all(|e| e.resource_id != at_a.binding_id));

    // No phone number or code ever went into a URL.
    for url in b.visited_urls().await? {
        assert!(
            !url.contains("13800138000") && !url.contains(&code),
            "{url}"
        );
    }
    b.submit("#sign-out").await?;
    b.wait_for("#phone-form").await?;
    // Signed out on the server too, not only in the browser.
    let signed_in = paybind_tests::text_rows(
        &stack.payment_db_url(),
        "SELECT CAST(COUNT(*) AS TEXT) FROM shopper_logins WHERE status = 'SIGNED_IN'",
    )
    .await?;
    assert_eq!(signed_in, vec![vec!["0".to_owned()]]);
    b.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_shopper_ends_a_binding() -> anyhow::Result<()> {
    a_shopper_ends_a_binding_on_the_payment_institutions_page(Backend::Sqlite, "my_bindings_sqlite")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_shopper_ends_a_binding() -> anyhow::Result<()> {
    a_shopper_ends_a_binding_on_the_payment_institutions_page(
        Backend::Postgres,
        "my_bindings_postgres",
    )
    .await
}
