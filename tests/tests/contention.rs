//! Payments racing on the same bindings, with declines among them: the
//! load that once deadlocked PostgreSQL (a reservation locking a binding
//! while a batch of outcomes gave declined amounts back to bindings in
//! another order). Every request must get its answer — succeeded or
//! declined — and the limits must add up.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use paybind_tests::{
    cny,
    fixtures::{bind_card, VISA},
    pb, Stack, DAILY_LIMIT, SHOP_A,
};
use tokio::sync::Semaphore;

type R = anyhow::Result<()>;

const DECLINES_CHARGES: &str = "4000000000000341";
const BINDINGS: usize = 16;
const DECLINING: usize = 2;
const PAYMENTS: usize = 2_000;
const IN_FLIGHT: usize = 256;
const AMOUNT: i64 = 100;

paybind_tests::on_both_backends!(with_merchant = false;
    mixed_declines_under_load_get_every_answer,
);

async fn mixed_declines_under_load_get_every_answer(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let mut tokens = Vec::new();
    for i in 0..BINDINGS {
        let card = if i < DECLINING {
            DECLINES_CHARGES
        } else {
            VISA
        };
        tokens.push((
            format!("u{i}"),
            bind_card(stack, &mut c, &format!("u{i}"), card)
                .await?
                .binding_token,
        ));
    }
    let tokens = Arc::new(tokens);
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::with_capacity(PAYMENTS);
    for n in 0..PAYMENTS {
        let (mut client, tokens, slots) = (c.clone(), tokens.clone(), slots.clone());
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await.expect("semaphore");
            let (user, token) = &tokens[n % BINDINGS];
            client
                .pay(pb::PayRequest {
                    binding_token: token.clone(),
                    merchant_user_id: user.clone(),
                    merchant_order_id: format!("o-{n}"),
                    amount: cny(AMOUNT),
                    description: String::new(),
                    idempotency_key: format!("k-{n}"),
                })
                .await
                .map(|r| (n % BINDINGS, r.into_inner().payment.expect("payment")))
        }));
    }
    let (mut succeeded, mut declined) = (vec![0i64; BINDINGS], 0usize);
    let mut errors = Vec::new();
    for task in tasks {
        match task.await? {
            Ok((b, p)) if p.status == pb::PaymentStatus::Succeeded as i32 => succeeded[b] += AMOUNT,
            Ok((b, p)) => {
                assert_eq!(p.status, pb::PaymentStatus::Declined as i32, "{p:?}");
                assert!(b < DECLINING, "only the declining cards decline");
                declined += 1;
            }
            Err(status) => errors.push(format!("{:?} {}", status.code(), status.message())),
        }
    }
    assert!(
        errors.is_empty(),
        "{} of {PAYMENTS} failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert_eq!(declined, PAYMENTS / BINDINGS * DECLINING);
    assert_eq!(
        stack.acquirer.net_charged(),
        succeeded.iter().sum::<i64>(),
        "the network charged what was answered"
    );
    // Today's usage is counted per card: each binding shows its card's
    // succeeded payments (declines gave theirs back).
    let card_of = |b: usize| b < DECLINING;
    let used_by_card = |declining: bool| -> i64 {
        (0..BINDINGS)
            .filter(|b| card_of(*b) == declining)
            .map(|b| succeeded[b])
            .sum()
    };
    let listed = |user: String| {
        let mut client = c.clone();
        async move {
            let list = client
                .list_bindings(pb::ListBindingsRequest {
                    merchant_user_id: user,
                    ..Default::default()
                })
                .await?
                .into_inner();
            anyhow::Ok(
                list.bindings[0]
                    .limits
                    .as_ref()
                    .and_then(|l| l.remaining_today.as_ref())
                    .map(|m| m.amount_minor)
                    .expect("limits"),
            )
        }
    };
    for b in 0..BINDINGS {
        assert_eq!(
            listed(format!("u{b}")).await?,
            DAILY_LIMIT - used_by_card(card_of(b)),
            "binding {b}"
        );
    }
    Ok(())
}
