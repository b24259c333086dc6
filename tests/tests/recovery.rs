//! Charges left in flight by a payment-svc process that is gone. Here the
//! "gone process" is a second store on the same database that reserves
//! payments — exactly what a payment-svc does before it asks the card
//! network — and is then dropped, as a `kill -9` would drop it (its
//! advisory lock goes with its connection). `tests/tests/faults.rs` does the
//! same with real processes and real signals.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use paybind_shared::{
    clock::{day_number, now_ms},
    fields::request_hash,
    ids::{BindingId, IdempotencyKey, MerchantId, MerchantUserId, OrderId, PaymentId},
    money::{Currency, Money},
};
use paybind_tests::{
    cny,
    fixtures::{bind_card, Client, VISA},
    pb, Stack, DAILY_LIMIT, SHOP_A,
};
use payment_svc::{
    domain::{
        acquirer::{Acquirer, CardRef},
        card::{CardNumber, Expiry},
    },
    store::{ReserveOutcome, ReservePayment},
};

type R = anyhow::Result<()>;

paybind_tests::on_both_backends!(with_merchant = false;
    charges_of_a_gone_process_are_settled_without_a_retry,
    a_retry_after_the_process_died_is_answered_at_once,
);

/// What a payment-svc does before it asks the card network, done by a
/// process that then dies: the payment reserved (PENDING, counted against
/// today's limit, its charge in flight under this process's key).
async fn reserve_then_die(
    stack: &Stack,
    binding: &pb::Binding,
    user: &str,
    order: &str,
    amount: i64,
    key: &str,
) -> anyhow::Result<PaymentId> {
    let store = payment_svc::store::connect(&stack.payment_db_url(), 1).await?;
    let payment_id = PaymentId::generate();
    let cny_currency = Currency::parse("CNY")?;
    let now = now_ms();
    let request = ReservePayment {
        payment_id: payment_id.clone(),
        merchant_id: MerchantId::parse(SHOP_A)?,
        binding_id: BindingId::parse(&binding.binding_id)?,
        merchant_user_id: MerchantUserId::parse(user)?,
        order_id: OrderId::parse(order)?,
        amount: Money::new(amount, cny_currency)?,
        description: "Green tea".into(),
        idempotency_key: IdempotencyKey::parse(key)?,
        // As payment-svc hashes a Pay request, so a retry matches.
        request_hash: request_hash(&[user, order, &amount.to_string(), "CNY", "Green tea"]),
        day: day_number(now, 480),
        now_ms: now,
    };
    // This "process" shares a SQLite file with the running payment-svc,
    // which SQLite deployments never do (one process owns the file): a
    // write of the service's own (its event sequencer, say) can land between
    // this transaction's read and its write, and SQLite then refuses the
    // write at once rather than waiting. The reservation is sent again, as
    // a real payment-svc's retry would.
    let mut tries = 0;
    let outcomes = loop {
        match store.reserve_payments(std::slice::from_ref(&request)).await {
            Err(e) if e.to_string().contains("database is locked") && tries < 20 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            other => break other?,
        }
    };
    assert!(matches!(outcomes.as_slice(), [ReserveOutcome::Reserved(_)]));
    drop(store); // the process is gone
    Ok(payment_id)
}

/// The card network's side of a charge the dead process did send.
async fn charged_by_the_network(stack: &Stack, payment_id: &PaymentId, amount: i64) -> R {
    let number = CardNumber::parse(VISA)?;
    let card = CardRef {
        number: &number,
        expiry: Expiry {
            month: 12,
            year: 2031,
        },
        cvv: None,
    };
    stack
        .acquirer
        .charge(
            payment_id,
            &card,
            Money::new(amount, Currency::parse("CNY")?)?,
        )
        .await?;
    Ok(())
}

async fn payment(c: &mut Client, id: &PaymentId) -> anyhow::Result<pb::Payment> {
    Ok(c.get_payment(pb::GetPaymentRequest {
        payment_id: id.as_str().into(),
    })
    .await?
    .into_inner()
    .payment
    .expect("payment"))
}

async fn remaining_today(c: &mut Client, user: &str) -> anyhow::Result<i64> {
    let list = c
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: user.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(list.bindings[0]
        .limits
        .as_ref()
        .and_then(|l| l.remaining_today.as_ref())
        .map(|m| m.amount_minor)
        .expect("limits"))
}

async fn charges_of_a_gone_process_are_settled_without_a_retry(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let binding = bind_card(stack, &mut c, "ava", VISA).await?;
    // Two charges in flight when the process died: one the network made,
    // one it never saw.
    let made = reserve_then_die(stack, &binding, "ava", "o-made", 3_000, "k-made").await?;
    charged_by_the_network(stack, &made, 3_000).await?;
    let never = reserve_then_die(stack, &binding, "ava", "o-never", 2_000, "k-never").await?;
    assert_eq!(remaining_today(&mut c, "ava").await?, DAILY_LIMIT - 5_000);

    // No client retries: the running payment-svc settles both by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (a, b) = (
            payment(&mut c, &made).await?,
            payment(&mut c, &never).await?,
        );
        let pending = pb::PaymentStatus::Pending as i32;
        if a.status != pending && b.status != pending {
            assert_eq!(a.status, pb::PaymentStatus::Succeeded as i32, "as charged");
            assert_eq!(
                b.status,
                pb::PaymentStatus::Declined as i32,
                "never charged"
            );
            assert_eq!(b.decline_reason, "PROCESSING_ERROR");
            break;
        }
        assert!(Instant::now() < deadline, "still pending: {a:?} {b:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        remaining_today(&mut c, "ava").await?,
        DAILY_LIMIT - 3_000,
        "the charge never made gives its amount back"
    );
    assert_eq!(stack.acquirer.approved_charges(), 1, "charged once");
    // A late retry of the voided one learns its outcome; nothing is charged.
    let again = c
        .pay(pb::PayRequest {
            binding_token: binding.binding_token.clone(),
            merchant_user_id: "ava".into(),
            merchant_order_id: "o-never".into(),
            amount: cny(2_000),
            description: "Green tea".into(),
            idempotency_key: "k-never".into(),
        })
        .await?
        .into_inner()
        .payment
        .expect("payment");
    assert_eq!(again.payment_id, never.as_str());
    assert_eq!(again.status, pb::PaymentStatus::Declined as i32);
    assert_eq!(stack.acquirer.approved_charges(), 1);
    Ok(())
}

async fn a_retry_after_the_process_died_is_answered_at_once(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let binding = bind_card(stack, &mut c, "bo", VISA).await?;
    let id = reserve_then_die(stack, &binding, "bo", "o-1", 1_500, "k-1").await?;
    let started = Instant::now();
    let answer = c
        .pay(pb::PayRequest {
            binding_token: binding.binding_token.clone(),
            merchant_user_id: "bo".into(),
            merchant_order_id: "o-1".into(),
            amount: cny(1_500),
            description: "Green tea".into(),
            idempotency_key: "k-1".into(),
        })
        .await?
        .into_inner()
        .payment
        .expect("payment");
    let waited = started.elapsed();
    assert_eq!(
        answer.payment_id,
        id.as_str(),
        "the first payment, not a new one"
    );
    assert_eq!(answer.status, pb::PaymentStatus::Succeeded as i32);
    assert!(
        waited < Duration::from_secs(2),
        "answered at once, not after a timeout: {waited:?}"
    );
    assert_eq!(stack.acquirer.approved_charges(), 1);
    assert_eq!(remaining_today(&mut c, "bo").await?, DAILY_LIMIT - 1_500);
    Ok(())
}

/// A payment left PENDING by a process that died, whose binding the
/// shopper then removed: a retry must not charge the card (the binding no
/// longer allows it); what the network did before stands.
async fn a_retry_after_unbinding_charges_nothing(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let binding = bind_card(stack, &mut c, "cy", VISA).await?;
    let id = reserve_then_die(stack, &binding, "cy", "o-1", 1_500, "k-1").await?;
    c.unbind(pb::UnbindRequest {
        binding_token: binding.binding_token.clone(),
        merchant_user_id: "cy".into(),
        reason: "user removed the card".into(),
    })
    .await?;
    let retry = c
        .pay(pb::PayRequest {
            binding_token: binding.binding_token.clone(),
            merchant_user_id: "cy".into(),
            merchant_order_id: "o-1".into(),
            amount: cny(1_500),
            description: "Green tea".into(),
            idempotency_key: "k-1".into(),
        })
        .await?
        .into_inner()
        .payment
        .expect("payment");
    assert_eq!(retry.payment_id, id.as_str(), "the first payment");
    assert_eq!(retry.status, pb::PaymentStatus::Declined as i32);
    assert_eq!(stack.acquirer.approved_charges(), 0, "nothing charged");
    assert_eq!(
        payment(&mut c, &id).await?.status,
        pb::PaymentStatus::Declined as i32
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_unbinding_charges_nothing_on_both_backends() -> R {
    for backend in [
        paybind_tests::Backend::Sqlite,
        paybind_tests::Backend::Postgres,
    ] {
        // The recovery worker would settle it too (without charging); it is
        // kept away so that the retry is what settles it.
        let Some(stack) = Stack::start_tuned(backend, |s| s.recovery.interval_ms = 60_000).await?
        else {
            continue;
        };
        let result = a_retry_after_unbinding_charges_nothing(&stack).await;
        stack.stop().await?;
        result.map_err(|e| e.context(format!("on {backend:?}")))?;
    }
    Ok(())
}
