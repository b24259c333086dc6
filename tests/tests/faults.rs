//! Faults between the services and under them, with both services running
//! in this process: payment-svc silent (every byte between the services
//! held, as a SIGSTOP would hold them), database connections cut mid-load.
//! The process-level faults (`kill -9`, SIGSTOP of a real process, a
//! connection flood) are in the `fault_suite` binary.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use paybind_tests::{
    cny,
    fixtures::{shop_user_with_card, Shop, VISA},
    mpb, reason, Backend, Stack, OPERATOR,
};
use sqlx::{Connection, Executor};
use tonic::Code;

type R = anyhow::Result<()>;

paybind_tests::on_both_backends!(with_merchant = true;
    a_silent_payment_svc_is_tried_again_on_the_shops_own_deadline,
    get_user_answers_at_once_while_payment_svc_is_silent,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_database_connections_are_unavailable_never_internal() -> R {
    paybind_tests::run_scenario(Backend::Postgres, true, |s| Box::pin(cut_connections(s))).await
}

fn checkout(user: &str, key: &str) -> mpb::CheckoutRequest {
    mpb::CheckoutRequest {
        user_id: user.into(),
        amount: cny(1_000),
        description: "tea".into(),
        presentation: 0,
        return_url: String::new(),
        idempotency_key: key.into(),
    }
}

async fn a_silent_payment_svc_is_tried_again_on_the_shops_own_deadline(stack: &Stack) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    shop_user_with_card(stack, &mut shop, "ann", VISA).await?;
    // Each try may take 2 s (the test config's payment.timeout_ms); the
    // first one's answer is held for 2.5 s, so it hits the shop's own
    // deadline and only a second try can get through.
    stack.pause_payment_link()?;
    let started = Instant::now();
    let pending = {
        let mut shop = shop.clone();
        tokio::spawn(async move { shop.checkout(checkout("ann", "co-1")).await })
    };
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    stack.resume_payment_link()?;
    let order = pending.await??.into_inner().order.expect("order");
    assert_eq!(
        order.status,
        mpb::OrderStatus::Paid as i32,
        "paid on a later try, not left to the settler"
    );
    assert!(started.elapsed() >= Duration::from_secs(2), "it did wait");
    assert_eq!(stack.acquirer.approved_charges(), 1, "charged once");
    Ok(())
}

async fn get_user_answers_at_once_while_payment_svc_is_silent(stack: &Stack) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    shop_user_with_card(stack, &mut shop, "bea", VISA).await?;
    let get = |shop: &mut Shop| {
        let mut shop = shop.clone();
        async move {
            anyhow::Ok(
                shop.get_user(mpb::GetUserRequest {
                    user_id: "bea".into(),
                })
                .await?
                .into_inner()
                .user
                .expect("user")
                .card
                .expect("card on file"),
            )
        }
    };
    let fresh = get(&mut shop).await?;
    assert!(fresh.limits.is_some() && fresh.limits_as_of.is_some());

    stack.pause_payment_link()?;
    let started = Instant::now();
    let card = get(&mut shop).await?;
    let waited = started.elapsed();
    stack.resume_payment_link()?;
    assert!(
        waited < Duration::from_secs(1),
        "a decoration does not wait for the full deadline: {waited:?}"
    );
    assert_eq!(card.limits, fresh.limits, "the last figures read");
    assert_eq!(
        card.limits_as_of, fresh.limits_as_of,
        "...and when they were read"
    );
    Ok(())
}

/// Terminates every connection of `database` but the caller's.
async fn terminate_backends(admin_url: &str, database: &str) -> R {
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    admin
        .execute(
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{database}' AND pid <> pg_backend_pid()"
            )
            .as_str(),
        )
        .await?;
    Ok(())
}

async fn cut_connections(stack: &Stack) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    for u in 0..4 {
        shop_user_with_card(stack, &mut shop, &format!("u{u}"), VISA).await?;
    }
    let admin = std::env::var("PAYBIND_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let databases: Vec<String> = [stack.payment_db_url(), stack.merchant_db_url()?]
        .iter()
        .map(|url| url.rsplit('/').next().unwrap_or_default().to_owned())
        .collect();
    let cutting = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let cutter = {
        let (cutting, admin, databases) = (cutting.clone(), admin.clone(), databases.clone());
        tokio::spawn(async move {
            while cutting.load(std::sync::atomic::Ordering::SeqCst) {
                for db in &databases {
                    let _ = terminate_backends(&admin, db).await;
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    for n in 0..200 {
        let mut shop = shop.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("co-{n}");
            (
                key.clone(),
                shop.checkout(checkout(&format!("u{}", n % 4), &key)).await,
            )
        }));
    }
    let mut retry = Vec::new();
    for task in tasks {
        let (key, result) = task.await?;
        match result {
            Ok(_) => {}
            Err(status) => {
                assert_ne!(status.code(), Code::Internal, "{key}: {status:?}");
                assert_eq!(status.code(), Code::Unavailable, "{key}: {status:?}");
                assert!(
                    matches!(
                        reason(&status).as_str(),
                        "DATABASE_UNAVAILABLE" | "PAYMENT_SERVICE_UNAVAILABLE"
                    ),
                    "{key}: {status:?}"
                );
                retry.push(key);
            }
        }
    }
    cutting.store(false, std::sync::atomic::Ordering::SeqCst);
    cutter.await?;
    eprintln!(
        "{} of 200 checkouts answered UNAVAILABLE while connections were cut",
        retry.len()
    );
    // Sent again with the same keys, every order is paid, each once.
    for key in &retry {
        let n: usize = key.trim_start_matches("co-").parse()?;
        let mut order = None;
        for _ in 0..20 {
            match shop.checkout(checkout(&format!("u{}", n % 4), key)).await {
                Ok(r) => {
                    order = r.into_inner().order;
                    break;
                }
                Err(s) if s.code() == Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(300)).await
                }
                Err(s) => anyhow::bail!("{key}: {s:?}"),
            }
        }
        let order = order.expect("answered");
        if order.status == mpb::OrderStatus::PendingPayment as i32 {
            continue; // the settler finishes it
        }
        assert_eq!(order.status, mpb::OrderStatus::Paid as i32, "{key}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut paid = 0;
        for u in 0..4 {
            paid += shop
                .list_orders(mpb::ListOrdersRequest {
                    user_id: format!("u{u}"),
                    page_size: 100,
                    page_token: String::new(),
                })
                .await?
                .into_inner()
                .orders
                .iter()
                .filter(|o| o.status == mpb::OrderStatus::Paid as i32)
                .count();
        }
        if paid == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{paid} of 200 paid");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        stack.acquirer.approved_charges(),
        200,
        "each order charged once"
    );
    assert_eq!(stack.acquirer.net_charged(), 200 * 1_000);
    Ok(())
}
