//! Binding only the cardholder. Card details alone — a stolen card, or a
//! direct-entry merchant with no shopper at all — must never bind: the
//! card's issuer checks that name, ID number and phone are its holder's as
//! on file, and the code goes to the phone the issuer has on file, never to
//! one the submitter typed. A refusal tells nobody which detail was wrong;
//! payment-svc keeps the detail for itself.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use paybind_tests::{
    cny,
    fixtures::{open_session, read_session, submit_as_zhang_san as submit, PHONE, VISA},
    metadata_of, pb, reason, text_rows, Stack, BIND_AND_PAY_LIMIT, RETURN_URL, SHOP_A,
};
use tonic::{Code, Status};
use tonic_types::StatusExt;

type R = anyhow::Result<()>;

/// Li Si's card (README, "Test cards").
const LI_SIS_VISA: &str = "4111111111111111";
/// A phone that is not Zhang San's: the one a thief would type.
const THIEFS_PHONE: &str = "+8613900139000";
/// Passes the Luhn check, but no issuer knows it.
const NO_ISSUER: &str = "4000000000000010";
const CVV_MISMATCH: &str = "4000000000000127";

paybind_tests::on_both_backends!(with_merchant = false;
    card_details_alone_do_not_bind_and_the_code_goes_to_the_phone_on_file,
    every_refusal_at_binding_looks_the_same_and_the_detail_is_kept,
    bind_and_pay_is_capped_per_merchant,
);

fn assert_not_verified(err: &Status, attempts_left: &str) {
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(reason(err), "CARD_NOT_VERIFIED");
    let meta = metadata_of(err);
    assert_eq!(
        meta.keys().map(String::as_str).collect::<Vec<_>>(),
        ["attempts_left"],
        "nothing but the attempts left"
    );
    assert_eq!(meta["attempts_left"], attempts_left);
    assert!(
        err.get_details_bad_request().is_none(),
        "no field is named: {err:?}"
    );
}

/// The outcomes payment-svc recorded for `session_id`, oldest first.
async fn card_checks(stack: &Stack, session_id: &str) -> anyhow::Result<Vec<String>> {
    let rows = text_rows(
        &stack.payment_db_url(),
        &format!("SELECT outcome FROM card_checks WHERE session_id = '{session_id}' ORDER BY id"),
    )
    .await?;
    Ok(rows.into_iter().map(|mut r| r.remove(0)).collect())
}

async fn card_details_alone_do_not_bind_and_the_code_goes_to_the_phone_on_file(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let session = open_session(&mut c, "mia").await?;

    // Li Si's card with Zhang San's name, ID number and phone.
    let err = submit(&mut c, &session, LI_SIS_VISA, PHONE)
        .await
        .expect_err("not Zhang San's card");
    assert_not_verified(&err, "2");
    // Zhang San's card, everything right but the phone: the thief's.
    let err = submit(&mut c, &session, VISA, THIEFS_PHONE)
        .await
        .expect_err("not the phone on file");
    assert_not_verified(&err, "1");
    assert!(
        stack.outbox().messages().is_empty(),
        "no code was sent for a card that was not verified"
    );

    // The holder, as on file: the code goes to the issuer's phone.
    let awaiting = submit(&mut c, &session, VISA, "138 0013 8000").await?;
    assert_eq!(
        awaiting.status,
        pb::BindSessionStatus::AwaitingVerification as i32
    );
    assert_eq!(awaiting.code_sent_to, "+86 138****8000");
    let sent: Vec<String> = stack
        .outbox()
        .messages()
        .into_iter()
        .map(|m| m.to)
        .collect();
    assert_eq!(sent, [PHONE], "one code, to the phone on file");

    let done = c
        .verify_bind(pb::VerifyBindRequest {
            session_id: session.clone(),
            code: stack.last_code(PHONE)?,
        })
        .await?
        .into_inner()
        .session
        .expect("session");
    assert_eq!(done.status, pb::BindSessionStatus::Completed as i32);
    assert_eq!(
        card_checks(stack, &session).await?,
        ["HOLDER_MISMATCH", "HOLDER_MISMATCH", "VERIFIED"]
    );
    Ok(())
}

async fn every_refusal_at_binding_looks_the_same_and_the_detail_is_kept(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let mut refusals = Vec::new();
    let mut sessions = Vec::new();
    for (user, number, phone) in [
        ("no-issuer", NO_ISSUER, PHONE),
        ("bad-cvv", CVV_MISMATCH, PHONE),
        ("other-phone", VISA, THIEFS_PHONE),
    ] {
        let session = open_session(&mut c, user).await?;
        let err = submit(&mut c, &session, number, phone)
            .await
            .expect_err("refused");
        assert_not_verified(&err, "2");
        refusals.push((err.code(), err.message().to_owned(), reason(&err)));
        sessions.push(session);
    }
    assert!(
        refusals.windows(2).all(|w| w[0] == w[1]),
        "an unknown card, a wrong CVV and a wrong phone answer alike: {refusals:?}"
    );
    let mut kept = Vec::new();
    for session in &sessions {
        kept.extend(card_checks(stack, session).await?);
        let read = read_session(&mut c, session).await?;
        assert_eq!(read.status, pb::BindSessionStatus::Open as i32);
        assert_eq!(read.last_error_reason, "CARD_NOT_VERIFIED");
    }
    assert_eq!(
        kept,
        ["NO_CARDHOLDER_RECORD", "CVV_MISMATCH", "HOLDER_MISMATCH"]
    );
    assert!(stack.outbox().messages().is_empty());
    Ok(())
}

async fn bind_and_pay_is_capped_per_merchant(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let request = |amount: i64, key: &str| pb::BindAndPayRequest {
        merchant_user_id: "ned".into(),
        presentation: pb::Presentation::Redirect as i32,
        return_url: RETURN_URL.into(),
        prefill: None,
        payment: Some(pb::PaymentDetails {
            merchant_order_id: format!("order-{key}"),
            amount: cny(amount),
            description: "a teapot".into(),
        }),
        idempotency_key: key.into(),
    };
    let err = c
        .bind_and_pay(request(BIND_AND_PAY_LIMIT + 1, "over"))
        .await
        .expect_err("above the cap");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), "BIND_AND_PAY_LIMIT_EXCEEDED");
    assert_eq!(
        metadata_of(&err)["bind_and_pay_limit"],
        BIND_AND_PAY_LIMIT.to_string()
    );
    let rows = text_rows(
        &stack.payment_db_url(),
        "SELECT id FROM bind_sessions WHERE merchant_user_id = 'ned'",
    )
    .await?;
    assert!(rows.is_empty(), "nothing was opened");

    let session = c
        .bind_and_pay(request(BIND_AND_PAY_LIMIT, "at"))
        .await?
        .into_inner()
        .session
        .expect("session");
    assert_eq!(session.status, pb::BindSessionStatus::Open as i32);
    Ok(())
}
