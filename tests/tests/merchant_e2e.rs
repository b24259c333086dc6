//! Both services for real: the shop's systems drive merchant-svc's API,
//! merchant-svc calls payment-svc over mTLS. Every scenario on SQLite and on
//! PostgreSQL.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use paybind_tests::{
    cny,
    fixtures::{card, shopper, PHONE, VISA},
    metadata_of, mpb, pb, reason, Stack, DAILY_LIMIT, OPERATOR, PER_PAYMENT_LIMIT, SHOP_A, SHOP_B,
};
use tonic::{transport::Channel, Code, Status};

type Shop = mpb::merchant_service_client::MerchantServiceClient<Channel>;
type R = anyhow::Result<()>;

const MASTERCARD: &str = "5555555555554444";
const INSUFFICIENT_FUNDS: &str = "4000000000009995";
const DECLINES_CHARGES: &str = "4000000000000341";

paybind_tests::on_both_backends!(with_merchant = true;
    bind_first_then_checkout_pays_without_a_code,
    checkout_without_a_card_goes_through_bind_and_pay_and_leaves_the_user_bound,
    a_declined_bind_and_pay_binds_nothing,
    declines_and_limits_settle_the_order_as_declined,
    refunds_go_through_and_never_exceed_the_order,
    removing_the_card_sends_the_next_checkout_back_to_bind_and_pay,
    a_binding_revoked_at_payment_svc_is_forgotten_by_the_shop,
    checkout_is_idempotent_and_refuses_bad_input,
    a_payment_svc_outage_keeps_orders_and_settles_them_once,
);

// ---------------------------------------------------------------- helpers

async fn create_user(shop: &mut Shop, id: &str) -> anyhow::Result<mpb::User> {
    Ok(shop
        .create_user(mpb::CreateUserRequest {
            user_id: id.into(),
            display_name: "Zhang San".into(),
            phone: PHONE.into(),
        })
        .await?
        .into_inner()
        .user
        .expect("user"))
}

async fn get_user(shop: &mut Shop, id: &str) -> anyhow::Result<mpb::User> {
    Ok(shop
        .get_user(mpb::GetUserRequest { user_id: id.into() })
        .await?
        .into_inner()
        .user
        .expect("user"))
}

fn checkout_request(user: &str, amount: i64, key: &str) -> mpb::CheckoutRequest {
    mpb::CheckoutRequest {
        user_id: user.into(),
        amount: cny(amount),
        description: "Green tea".into(),
        presentation: pb::Presentation::Embedded as i32,
        return_url: String::new(),
        idempotency_key: key.into(),
    }
}

async fn checkout(
    shop: &mut Shop,
    user: &str,
    amount: i64,
    key: &str,
) -> Result<mpb::Order, Status> {
    Ok(shop
        .checkout(checkout_request(user, amount, key))
        .await?
        .into_inner()
        .order
        .expect("order"))
}

async fn get_order(shop: &mut Shop, id: &str) -> anyhow::Result<mpb::Order> {
    Ok(shop
        .get_order(mpb::GetOrderRequest {
            order_id: id.into(),
        })
        .await?
        .into_inner()
        .order
        .expect("order"))
}

/// The shopper fills in the page (here: direct entry through the shop).
async fn submit(shop: &mut Shop, session_id: &str, card_number: &str) -> Result<(), Status> {
    shop.submit_shopper_info(mpb::SubmitShopperInfoRequest {
        session_id: session_id.into(),
        shopper: Some(shopper("Zhang San")),
        card: Some(card(card_number)),
    })
    .await?;
    Ok(())
}

async fn verify(
    stack: &Stack,
    shop: &mut Shop,
    session_id: &str,
) -> Result<mpb::VerifyShopperCodeResponse, Status> {
    let code = stack
        .last_code(PHONE)
        .map_err(|e| Status::internal(e.to_string()))?;
    Ok(shop
        .verify_shopper_code(mpb::VerifyShopperCodeRequest {
            session_id: session_id.into(),
            code,
        })
        .await?
        .into_inner())
}

/// The first binding request, through the shop.
async fn bind_card(
    stack: &Stack,
    shop: &mut Shop,
    user: &str,
    card: &str,
) -> anyhow::Result<mpb::User> {
    let started = shop
        .start_binding(mpb::StartBindingRequest {
            user_id: user.into(),
            presentation: pb::Presentation::Redirect as i32,
            return_url: String::new(),
        })
        .await?
        .into_inner();
    assert!(started.binding_page_url.contains(&started.session_id));
    submit(shop, &started.session_id, card).await?;
    let done = verify(stack, shop, &started.session_id).await?;
    Ok(done.user.expect("user"))
}

fn status(order: &mpb::Order) -> mpb::OrderStatus {
    mpb::OrderStatus::try_from(order.status).unwrap_or(mpb::OrderStatus::Unspecified)
}

// -------------------------------------------------------------- scenarios

async fn bind_first_then_checkout_pays_without_a_code(stack: &Stack) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    let created = create_user(&mut shop, "alice").await?;
    assert!(created.card.is_none());
    let user = bind_card(stack, &mut shop, "alice", VISA).await?;
    let card = user.card.expect("card on file");
    assert_eq!(card.last4, "4242");
    assert_eq!(card.brand, pb::CardBrand::Visa as i32);
    let limits = card.limits.expect("limits");
    assert_eq!(
        limits.remaining_today.map(|m| m.amount_minor),
        Some(DAILY_LIMIT)
    );

    let codes = stack.outbox().messages().len();
    let order = checkout(&mut shop, "alice", 1_999, "co-1").await?;
    assert_eq!(status(&order), mpb::OrderStatus::Paid);
    assert!(order.paid_with_card_on_file);
    assert!(!order.payment_id.is_empty());
    assert_eq!(stack.outbox().messages().len(), codes, "no code for paying");
    assert_eq!(stack.acquirer.approved_charges(), 1);

    // payment-svc agrees, seen as the shop's merchant identity.
    let mut payments = stack.client(SHOP_A).await?;
    let payment = payments
        .get_payment(pb::GetPaymentRequest {
            payment_id: order.payment_id.clone(),
        })
        .await?
        .into_inner()
        .payment
        .expect("payment");
    assert_eq!(payment.merchant_order_id, order.order_id);
    assert_eq!(payment.status, pb::PaymentStatus::Succeeded as i32);
    let remaining = get_user(&mut shop, "alice")
        .await?
        .card
        .and_then(|c| c.limits)
        .and_then(|l| l.remaining_today);
    assert_eq!(remaining.map(|m| m.amount_minor), Some(DAILY_LIMIT - 1_999));

    let orders = shop
        .list_orders(mpb::ListOrdersRequest {
            user_id: "alice".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(orders.orders.len(), 1);
    Ok(())
}

async fn checkout_without_a_card_goes_through_bind_and_pay_and_leaves_the_user_bound(
    stack: &Stack,
) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    create_user(&mut shop, "bob").await?;
    // Above the auth-free limit: BindAndPay's payment is authenticated.
    let amount = PER_PAYMENT_LIMIT + 10_000;
    let order = checkout(&mut shop, "bob", amount, "co-bob-1").await?;
    assert_eq!(status(&order), mpb::OrderStatus::AwaitingShopper);
    assert!(order.binding_page_url.ends_with(&order.session_id));
    assert_eq!(
        stack.acquirer.approved_charges(),
        0,
        "nothing charged before the shopper acts"
    );

    submit(&mut shop, &order.session_id, MASTERCARD).await?;
    let done = verify(stack, &mut shop, &order.session_id).await?;
    let paid = done.order.expect("order");
    assert_eq!(status(&paid), mpb::OrderStatus::Paid);
    assert!(!paid.paid_with_card_on_file);
    assert_eq!(
        done.user.and_then(|u| u.card).map(|c| c.last4).as_deref(),
        Some("4444")
    );
    assert_eq!(stack.acquirer.approved_charges(), 1);

    // CompleteSession (what the page's return triggers) is idempotent.
    let again = shop
        .complete_session(mpb::CompleteSessionRequest {
            session_id: order.session_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        again.session_status,
        pb::BindSessionStatus::Completed as i32
    );
    assert_eq!(
        again.order.map(|o| o.status),
        Some(mpb::OrderStatus::Paid as i32)
    );
    assert_eq!(stack.acquirer.approved_charges(), 1);

    // Next time the card on file pays, with no code.
    let codes = stack.outbox().messages().len();
    let next = checkout(&mut shop, "bob", 500, "co-bob-2").await?;
    assert_eq!(status(&next), mpb::OrderStatus::Paid);
    assert!(next.paid_with_card_on_file);
    assert_eq!(stack.outbox().messages().len(), codes);
    Ok(())
}

async fn a_declined_bind_and_pay_binds_nothing(stack: &Stack) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    create_user(&mut shop, "carol").await?;
    let order = checkout(&mut shop, "carol", 3_000, "co-carol").await?;
    submit(&mut shop, &order.session_id, INSUFFICIENT_FUNDS).await?;
    let err = verify(stack, &mut shop, &order.session_id)
        .await
        .expect_err("declined");
    assert_eq!(
        reason(&err),
        "CARD_DECLINED",
        "payment-svc's reason passes through"
    );
    assert_eq!(
        metadata_of(&err).get("decline_reason").map(String::as_str),
        Some("INSUFFICIENT_FUNDS")
    );
    assert!(
        get_user(&mut shop, "carol").await?.card.is_none(),
        "no binding"
    );
    assert_eq!(
        status(&get_order(&mut shop, &order.order_id).await?),
        mpb::OrderStatus::AwaitingShopper
    );
    // Another card in the same session pays and binds.
    submit(&mut shop, &order.session_id, VISA).await?;
    let done = verify(stack, &mut shop, &order.session_id).await?;
    assert_eq!(
        done.order.map(|o| o.status),
        Some(mpb::OrderStatus::Paid as i32)
    );
    assert!(done.user.and_then(|u| u.card).is_some());
    Ok(())
}

async fn declines_and_limits_settle_the_order_as_declined(stack: &Stack) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    create_user(&mut shop, "dan").await?;
    bind_card(stack, &mut shop, "dan", DECLINES_CHARGES).await?;
    let declined = checkout(&mut shop, "dan", 1_000, "co-dan-1").await?;
    assert_eq!(status(&declined), mpb::OrderStatus::Declined);
    assert_eq!(declined.decline_reason, "DO_NOT_HONOR");

    create_user(&mut shop, "erin").await?;
    bind_card(stack, &mut shop, "erin", VISA).await?;
    let over = checkout(&mut shop, "erin", PER_PAYMENT_LIMIT + 1, "co-erin-1").await?;
    assert_eq!(status(&over), mpb::OrderStatus::Declined);
    assert_eq!(over.decline_reason, "LIMIT_EXCEEDED");
    assert!(over.payment_id.is_empty(), "nothing was charged");
    assert_eq!(stack.acquirer.approved_charges(), 0);
    Ok(())
}

async fn refunds_go_through_and_never_exceed_the_order(stack: &Stack) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    create_user(&mut shop, "fay").await?;
    bind_card(stack, &mut shop, "fay", VISA).await?;
    let order = checkout(&mut shop, "fay", 10_000, "co-fay").await?;
    let refund = |amount: i64, key: &str| mpb::RefundOrderRequest {
        order_id: order.order_id.clone(),
        amount: cny(amount),
        reason: "broken cup".into(),
        idempotency_key: key.into(),
    };
    let after = shop
        .refund_order(refund(4_000, "r1"))
        .await?
        .into_inner()
        .order
        .expect("order");
    assert_eq!(after.refunded.map(|m| m.amount_minor), Some(4_000));
    let replay = shop
        .refund_order(refund(4_000, "r1"))
        .await?
        .into_inner()
        .order
        .expect("order");
    assert_eq!(
        replay.refunded.map(|m| m.amount_minor),
        Some(4_000),
        "a replay refunds nothing more"
    );
    let err = shop
        .refund_order(refund(6_001, "r2"))
        .await
        .expect_err("too much");
    assert_eq!(reason(&err), "REFUND_EXCEEDS_PAYMENT");
    let full = shop
        .refund_order(refund(6_000, "r3"))
        .await?
        .into_inner()
        .order
        .expect("order");
    assert_eq!(full.refunded.map(|m| m.amount_minor), Some(10_000));
    assert_eq!(stack.acquirer.net_charged(), 0);

    create_user(&mut shop, "gus").await?;
    let unpaid = checkout(&mut shop, "gus", 100, "co-gus").await?;
    let err = shop
        .refund_order(mpb::RefundOrderRequest {
            order_id: unpaid.order_id,
            amount: cny(100),
            reason: String::new(),
            idempotency_key: "r".into(),
        })
        .await
        .expect_err("not paid");
    assert_eq!(reason(&err), "ORDER_NOT_REFUNDABLE");
    Ok(())
}

async fn removing_the_card_sends_the_next_checkout_back_to_bind_and_pay(stack: &Stack) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    create_user(&mut shop, "hana").await?;
    bind_card(stack, &mut shop, "hana", VISA).await?;
    let user = shop
        .remove_card(mpb::RemoveCardRequest {
            user_id: "hana".into(),
        })
        .await?
        .into_inner()
        .user
        .expect("user");
    assert!(user.card.is_none());
    let err = shop
        .remove_card(mpb::RemoveCardRequest {
            user_id: "hana".into(),
        })
        .await
        .expect_err("no card left");
    assert_eq!(reason(&err), "NO_CARD_ON_FILE");
    // payment-svc revoked it too.
    let mut payments = stack.client(SHOP_A).await?;
    let listed = payments
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: "hana".into(),
            include_revoked: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(listed
        .bindings
        .iter()
        .all(|b| b.status == pb::BindingStatus::Revoked as i32));
    let order = checkout(&mut shop, "hana", 700, "co-hana").await?;
    assert_eq!(
        status(&order),
        mpb::OrderStatus::AwaitingShopper,
        "back to BindAndPay"
    );
    Ok(())
}

async fn a_binding_revoked_at_payment_svc_is_forgotten_by_the_shop(stack: &Stack) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    create_user(&mut shop, "ivan").await?;
    let user = bind_card(stack, &mut shop, "ivan", VISA).await?;
    assert!(user.card.is_some());
    // The binding ends on the payment institution's side (here: through the
    // merchant's own certificate, as the shopper's revocation would).
    let mut payments = stack.client(SHOP_A).await?;
    let binding = payments
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: "ivan".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .bindings
        .pop()
        .expect("binding");
    payments
        .unbind(pb::UnbindRequest {
            binding_token: binding.binding_token,
            merchant_user_id: "ivan".into(),
            reason: "revoked by the shopper".into(),
        })
        .await?;
    // The shop's checkout finds out, forgets the token, and asks the shopper.
    let order = checkout(&mut shop, "ivan", 900, "co-ivan").await?;
    assert_eq!(status(&order), mpb::OrderStatus::AwaitingShopper);
    assert!(get_user(&mut shop, "ivan").await?.card.is_none());
    assert_eq!(stack.acquirer.approved_charges(), 0);
    Ok(())
}

async fn checkout_is_idempotent_and_refuses_bad_input(stack: &Stack) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    create_user(&mut shop, "jin").await?;
    bind_card(stack, &mut shop, "jin", VISA).await?;
    let first = checkout(&mut shop, "jin", 1_000, "co-jin").await?;
    let again = checkout(&mut shop, "jin", 1_000, "co-jin").await?;
    assert_eq!(first.order_id, again.order_id);
    assert_eq!(stack.acquirer.approved_charges(), 1);
    let err = checkout(&mut shop, "jin", 2_000, "co-jin")
        .await
        .expect_err("reused");
    assert_eq!(reason(&err), "IDEMPOTENCY_KEY_REUSED");

    for (request, want) in [
        (checkout_request("nobody", 100, "k1"), "USER_NOT_FOUND"),
        (checkout_request("jin", 0, "k2"), "INVALID_AMOUNT"),
        (checkout_request("jin", 100, ""), "INVALID_ARGUMENT"),
        (
            mpb::CheckoutRequest {
                amount: Some(pb::Money {
                    amount_minor: 100,
                    currency: "USD".into(),
                }),
                ..checkout_request("jin", 100, "k3")
            },
            "CURRENCY_NOT_ACCEPTED",
        ),
    ] {
        let err = shop.checkout(request).await.expect_err(want);
        assert_eq!(reason(&err), want);
    }
    let err = create_user(&mut shop, "jin").await.expect_err("exists");
    let status = err.downcast_ref::<Status>().expect("status");
    assert_eq!(
        (status.code(), reason(status).as_str()),
        (Code::AlreadyExists, "USER_EXISTS")
    );
    assert_eq!(
        stack.acquirer.approved_charges(),
        1,
        "nothing more was charged"
    );

    // Only the shop's operators may call its API.
    let mut stranger = stack.merchant_client(SHOP_B).await?;
    let err = stranger
        .get_user(mpb::GetUserRequest {
            user_id: "jin".into(),
        })
        .await
        .expect_err("not an operator");
    assert_eq!(err.code(), Code::PermissionDenied);
    Ok(())
}

async fn a_payment_svc_outage_keeps_orders_and_settles_them_once(stack: &Stack) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    create_user(&mut shop, "kai").await?;
    bind_card(stack, &mut shop, "kai", VISA).await?;

    stack.stop_payment().await?;
    let err = checkout(&mut shop, "kai", 1_500, "co-kai")
        .await
        .expect_err("payment-svc is down");
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::Unavailable, "PAYMENT_SERVICE_UNAVAILABLE")
    );
    let order_id = metadata_of(&err)
        .get("order_id")
        .cloned()
        .expect("the order is named");
    assert_eq!(
        status(&get_order(&mut shop, &order_id).await?),
        mpb::OrderStatus::PendingPayment
    );
    // A retry while it is still down keeps the same order.
    let err = checkout(&mut shop, "kai", 1_500, "co-kai")
        .await
        .expect_err("still down");
    assert_eq!(metadata_of(&err).get("order_id"), Some(&order_id));

    stack.restart_payment().await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let settled = loop {
        let order = get_order(&mut shop, &order_id).await?;
        if status(&order) != mpb::OrderStatus::PendingPayment {
            break order;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the order was not settled after the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status(&settled), mpb::OrderStatus::Paid);
    assert_eq!(stack.acquirer.approved_charges(), 1, "charged once");
    // The shop's retry now returns the paid order and charges nothing more.
    let retried = checkout(&mut shop, "kai", 1_500, "co-kai").await?;
    assert_eq!(retried.order_id, order_id);
    assert_eq!(status(&retried), mpb::OrderStatus::Paid);
    assert_eq!(stack.acquirer.approved_charges(), 1);
    assert_eq!(stack.acquirer.net_charged(), 1_500);
    Ok(())
}
