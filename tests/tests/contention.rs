//! Payments racing on the same bindings, with declines among them: the
//! load that once deadlocked PostgreSQL (a reservation locking a binding
//! while a batch of outcomes gave declined amounts back to bindings in
//! another order). Every request must get its answer — succeeded or
//! declined — and the limits must add up.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use paybind_tests::{cny, pb, Stack, DAILY_LIMIT, RETURN_URL, SHOP_A};
use tokio::sync::Semaphore;
use tonic::transport::Channel;

type Client = pb::binding_service_client::BindingServiceClient<Channel>;
type R = anyhow::Result<()>;

const PHONE: &str = "+8613800138000";
const VISA: &str = "4242424242424242";
const DECLINES_CHARGES: &str = "4000000000000341";
const BINDINGS: usize = 16;
const DECLINING: usize = 2;
const PAYMENTS: usize = 2_000;
const IN_FLIGHT: usize = 256;
const AMOUNT: i64 = 100;

paybind_tests::on_both_backends!(with_merchant = false;
    mixed_declines_under_load_get_every_answer,
);

async fn bind(stack: &Stack, c: &mut Client, user: &str, card: &str) -> anyhow::Result<String> {
    let session = c
        .bind(pb::BindRequest {
            merchant_user_id: user.into(),
            presentation: pb::Presentation::Redirect as i32,
            return_url: RETURN_URL.into(),
            prefill: None,
            idempotency_key: format!("bind-{user}"),
        })
        .await?
        .into_inner()
        .session
        .expect("session");
    c.submit_bind_info(pb::SubmitBindInfoRequest {
        session_id: session.session_id.clone(),
        shopper: Some(pb::ShopperInfo {
            full_name: "Zhang San".into(),
            id_number: "11010519491231002X".into(),
            phone: PHONE.into(),
        }),
        card: Some(pb::CardInfo {
            number: card.into(),
            expiry_month: 12,
            expiry_year: 2031,
            cvv: "123".into(),
        }),
    })
    .await?;
    let done = c
        .verify_bind(pb::VerifyBindRequest {
            session_id: session.session_id,
            code: stack.last_code(PHONE)?,
        })
        .await?
        .into_inner()
        .session
        .expect("session");
    Ok(done.binding.expect("binding").binding_token)
}

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
            bind(stack, &mut c, &format!("u{i}"), card).await?,
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
    // Today's usage is each binding's succeeded payments: declines gave theirs back.
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
    for (b, used) in succeeded.iter().enumerate() {
        assert_eq!(
            listed(format!("u{b}")).await?,
            DAILY_LIMIT - used,
            "binding {b}"
        );
    }
    Ok(())
}
