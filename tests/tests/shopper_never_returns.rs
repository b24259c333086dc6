//! A shopper who finishes on the binding page and never comes back to the
//! shop (closed the tab, lost the connection): merchant-svc learns the
//! outcome on its own, server to server, and applies it.
use std::time::Duration;

use paybind_tests::{
    cny,
    fixtures::{card, shopper, Client, PHONE},
    mpb, on_both_backends, pb, Stack, SHOP_A,
};

/// Finishes a session straight at payment-svc, as the page does: the shop
/// is not told.
async fn finish_on_the_page(stack: &Stack, c: &mut Client, session_id: &str) -> anyhow::Result<()> {
    c.submit_bind_info(pb::SubmitBindInfoRequest {
        session_id: session_id.into(),
        shopper: Some(shopper("Zhang San")),
        card: Some(card("4242424242424242")),
    })
    .await?;
    c.verify_bind(pb::VerifyBindRequest {
        session_id: session_id.into(),
        code: stack.last_code(PHONE)?,
    })
    .await?;
    Ok(())
}

/// Polls `check` for up to 10 s.
async fn eventually<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    for _ in 0..100 {
        if check().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("merchant-svc never learnt that {what}")
}

async fn a_bind_and_pay_finished_on_the_page_is_settled_by_the_shop(
    stack: &Stack,
) -> anyhow::Result<()> {
    let mut shop = stack.merchant_client(paybind_tests::OPERATOR).await?;
    shop.create_user(mpb::CreateUserRequest {
        user_id: "bob".into(),
        display_name: "Zhang San".into(),
        phone: PHONE.into(),
    })
    .await?;
    let order = shop
        .checkout(mpb::CheckoutRequest {
            user_id: "bob".into(),
            amount: cny(12_800),
            description: "Tieguanyin".into(),
            presentation: pb::Presentation::Popup as i32,
            return_url: String::new(),
            idempotency_key: "co-bob-gone".into(),
        })
        .await?
        .into_inner()
        .order
        .ok_or_else(|| anyhow::anyhow!("no order"))?;
    assert_eq!(order.status, mpb::OrderStatus::AwaitingShopper as i32);
    let mut c = stack.client(SHOP_A).await?;
    finish_on_the_page(stack, &mut c, &order.session_id).await?;

    // No CompleteSession, no return to the shop: the shop finds out itself.
    eventually("the order was paid", || {
        let mut shop = shop.clone();
        let id = order.order_id.clone();
        async move {
            let order = shop
                .get_order(mpb::GetOrderRequest { order_id: id })
                .await?
                .into_inner()
                .order;
            Ok(order.is_some_and(|o| o.status == mpb::OrderStatus::Paid as i32))
        }
    })
    .await?;
    eventually("the card is on file", || {
        let mut shop = shop.clone();
        async move {
            let user = shop
                .get_user(mpb::GetUserRequest {
                    user_id: "bob".into(),
                })
                .await?
                .into_inner()
                .user;
            Ok(user.and_then(|u| u.card).is_some_and(|c| c.last4 == "4242"))
        }
    })
    .await?;
    assert_eq!(stack.acquirer.approved_charges(), 1, "charged once");
    Ok(())
}

async fn a_bind_finished_on_the_page_puts_the_card_on_file(stack: &Stack) -> anyhow::Result<()> {
    let mut shop = stack.merchant_client(paybind_tests::OPERATOR).await?;
    shop.create_user(mpb::CreateUserRequest {
        user_id: "carol".into(),
        display_name: "Zhang San".into(),
        phone: PHONE.into(),
    })
    .await?;
    let started = shop
        .start_binding(mpb::StartBindingRequest {
            user_id: "carol".into(),
            presentation: pb::Presentation::Embedded as i32,
            return_url: String::new(),
        })
        .await?
        .into_inner();
    let mut c = stack.client(SHOP_A).await?;
    finish_on_the_page(stack, &mut c, &started.session_id).await?;
    eventually("the card is on file", || {
        let mut shop = shop.clone();
        async move {
            let user = shop
                .get_user(mpb::GetUserRequest {
                    user_id: "carol".into(),
                })
                .await?
                .into_inner()
                .user;
            Ok(user.and_then(|u| u.card).is_some())
        }
    })
    .await
}

on_both_backends!(with_merchant = true;
    a_bind_and_pay_finished_on_the_page_is_settled_by_the_shop,
    a_bind_finished_on_the_page_puts_the_card_on_file,
);
