//! Retention, read straight from the database: a revoked binding keeps no
//! card number and no holder data; a session that expired unfinished keeps
//! nothing the shopper or the merchant gave it once its retention is over;
//! the issuers' answers go after theirs. Shown to merchants, the binding
//! and the session stay what they were (revoked; expired).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use paybind_tests::{
    execute_sql,
    fixtures::{bind_card, open_session, read_session, submit_as_zhang_san as submit, PHONE, VISA},
    pb, text_rows, Backend, Stack, SHOP_A,
};
use payment_svc::{config::Settings, domain::retention::RetentionSettings};

type R = anyhow::Result<()>;

fn tune(settings: &mut Settings) {
    settings.retention = RetentionSettings {
        session_data_secs: 0,
        card_checks_days: 1,
        interval_ms: 100,
    };
}

/// Which of the columns of one row hold anything: "set", or "" for NULL.
async fn shopper_columns(stack: &Stack, table: &str, id: &str, columns: &[&str]) -> Vec<String> {
    let select: Vec<String> = columns
        .iter()
        .map(|c| format!("CASE WHEN {c} IS NULL THEN '' ELSE 'set' END"))
        .collect();
    let rows = text_rows(
        &stack.payment_db_url(),
        &format!(
            "SELECT {} FROM {table} WHERE id = '{id}'",
            select.join(", ")
        ),
    )
    .await
    .expect("read the row");
    rows.into_iter().next().expect("the row is kept")
}

/// Waits (at most 10 s) until `done` holds: the purge runs every 100 ms.
async fn eventually<F, Fut>(what: &str, done: F) -> R
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: not within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

const SESSION_DATA: &[&str] = &[
    "prefill_name",
    "prefill_phone",
    "shopper_name",
    "id_number_ct",
    "phone",
    "pan_ct",
    "card_fingerprint",
    "card_last4",
    "otp_hash",
];

async fn scenario(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;

    // Unbinding wipes the card number and the holder at once.
    let binding = bind_card(stack, &mut c, "una", VISA).await?;
    let binding_data = ["pan_ct", "holder_name", "id_number_ct", "phone"];
    let before = shopper_columns(stack, "bindings", &binding.binding_id, &binding_data).await;
    assert!(
        before.iter().all(|v| !v.is_empty()),
        "an active binding keeps them"
    );
    c.unbind(pb::UnbindRequest {
        binding_token: binding.binding_token.clone(),
        merchant_user_id: "una".into(),
        reason: "user removed the card".into(),
    })
    .await?;
    let after = shopper_columns(stack, "bindings", &binding.binding_id, &binding_data).await;
    assert_eq!(after, ["", "", "", ""], "revoked: nothing kept");
    let listed = c
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: "una".into(),
            page_size: 10,
            page_token: String::new(),
            include_revoked: true,
        })
        .await?
        .into_inner()
        .bindings;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, pb::BindingStatus::Revoked as i32);
    assert_eq!(listed[0].card.as_ref().expect("card").last4, "4242");

    // A session abandoned while awaiting its code, with a prefill.
    let session = c
        .bind(pb::BindRequest {
            merchant_user_id: "vic".into(),
            presentation: pb::Presentation::Redirect as i32,
            return_url: paybind_tests::RETURN_URL.into(),
            prefill: Some(pb::ShopperPrefill {
                full_name: "Zhang San".into(),
                phone: PHONE.into(),
            }),
            idempotency_key: "bind-vic".into(),
        })
        .await?
        .into_inner()
        .session
        .expect("session")
        .session_id;
    submit(&mut c, &session, VISA, PHONE).await?;
    // An open session that has not expired keeps its prefill.
    let fresh = open_session(&mut c, "wes").await?;
    let held = shopper_columns(stack, "bind_sessions", &session, SESSION_DATA).await;
    assert!(held.iter().all(|v| !v.is_empty()), "{held:?}");

    // It expires.
    execute_sql(
        &stack.payment_db_url(),
        &format!("UPDATE bind_sessions SET expires_ms = 1 WHERE id = '{session}'"),
    )
    .await?;
    eventually("the expired session's data wiped", || async {
        shopper_columns(stack, "bind_sessions", &session, SESSION_DATA)
            .await
            .iter()
            .all(String::is_empty)
    })
    .await?;
    let read = read_session(&mut c, &session).await?;
    assert_eq!(read.status, pb::BindSessionStatus::Expired as i32);
    assert_eq!(read.code_sent_to, "", "no phone is left to show");
    let err = c
        .verify_bind(pb::VerifyBindRequest {
            session_id: session.clone(),
            code: stack.last_code(PHONE)?,
        })
        .await
        .expect_err("expired");
    assert_eq!(paybind_tests::reason(&err), "SESSION_EXPIRED");
    // The other session is untouched.
    let _ = fresh;

    // The issuers' answers go after their retention (a day here).
    let checks = || async {
        text_rows(
            &stack.payment_db_url(),
            "SELECT session_id FROM card_checks",
        )
        .await
        .expect("read")
        .len()
    };
    assert_eq!(checks().await, 2, "the two bindings' checks");
    execute_sql(
        &stack.payment_db_url(),
        &format!(
            "UPDATE card_checks SET checked_ms = checked_ms - {} WHERE session_id = '{session}'",
            2 * 86_400_000_i64
        ),
    )
    .await?;
    eventually("the old card check deleted", || async {
        checks().await == 1
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopper_data_is_wiped_on_unbind_and_after_expiry() -> R {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(stack) = Stack::start_tuned(backend, tune).await? else {
            continue;
        };
        let result = scenario(&stack).await;
        stack.stop().await?;
        result.map_err(|e| e.context(format!("on {backend:?}")))?;
    }
    Ok(())
}
