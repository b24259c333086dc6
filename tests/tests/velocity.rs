//! Velocity limits against card testing, SMS pumping and code guessing,
//! counted in the database (shared by replicas): a card is checked with its
//! issuer only so often, and a merchant's cards too; codes go to a phone
//! only so often; codes are tried only so often per session — a resend does
//! not start over — and per phone. Each refusal is RATE_LIMITED with
//! RetryInfo, and nothing is checked, sent or tried for it.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{future::Future, time::Duration};

use paybind_tests::{
    fixtures::{open_session, read_session, submit_as_zhang_san as submit, Client, PHONE, VISA},
    metadata_of, pb, reason, text_rows, Backend, Stack, SHOP_A, SHOP_B,
};
use payment_svc::{config::Settings, domain::velocity::VelocityLimits};
use tonic::{Code, Status};
use tonic_types::StatusExt;

type R = anyhow::Result<()>;

/// Zhang San's cards (README, "Test cards"): his phone is on file for all.
const MASTERCARD: &str = "5555555555554444";
const UNIONPAY: &str = "6200000000000005";
/// Refused by its issuer for a wrong CVV: what a card tester guesses at.
const CVV_MISMATCH: &str = "4000000000000127";

async fn on_both<F, Fut>(tune: fn(&mut Settings), scenario: F) -> R
where
    F: Fn(Stack) -> Fut,
    Fut: Future<Output = (Stack, R)>,
{
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(stack) = Stack::start_tuned(backend, tune).await? else {
            continue;
        };
        let (stack, result) = scenario(stack).await;
        stack.stop().await?;
        result.map_err(|e| e.context(format!("on {backend:?}")))?;
    }
    Ok(())
}

fn limits(tune: impl FnOnce(&mut VelocityLimits)) -> VelocityLimits {
    let mut limits = VelocityLimits::default();
    tune(&mut limits);
    limits
}

/// A RATE_LIMITED refusal about `scope`, with a retry delay within `window`.
fn assert_rate_limited(err: &Status, scope: &str, window: Duration) {
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(reason(err), "RATE_LIMITED", "{err:?}");
    assert_eq!(metadata_of(err)["scope"], scope);
    let delay = err
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo");
    assert!(delay > Duration::ZERO && delay <= window, "{delay:?}");
}

async fn card_checks(stack: &Stack) -> anyhow::Result<usize> {
    Ok(text_rows(
        &stack.payment_db_url(),
        "SELECT CAST(id AS TEXT) FROM card_checks",
    )
    .await?
    .len())
}

async fn status_of(c: &mut Client, session_id: &str) -> anyhow::Result<i32> {
    Ok(read_session(c, session_id).await?.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_testing_is_stopped_per_card_and_per_merchant() -> R {
    fn tune(s: &mut Settings) {
        s.velocity = limits(|l| {
            l.card_checks_per_card_per_day = 3;
            l.card_checks_per_merchant_per_minute = 5;
        });
    }
    on_both(tune, |stack| async move {
        let result = async {
            let mut c = stack.client(SHOP_A).await?;
            // Guessing the CVV of one card, a session per guess.
            for i in 0..3 {
                let session = open_session(&mut c, &format!("tester-{i}")).await?;
                let err = submit(&mut c, &session, CVV_MISMATCH, PHONE)
                    .await
                    .unwrap_err();
                assert_eq!(reason(&err), "CARD_NOT_VERIFIED");
            }
            let session = open_session(&mut c, "tester-3").await?;
            let err = submit(&mut c, &session, CVV_MISMATCH, PHONE)
                .await
                .unwrap_err();
            assert_rate_limited(&err, "card", Duration::from_secs(86_400));
            // Not checked with the issuer, and the session still open.
            assert_eq!(card_checks(&stack).await?, 3);
            assert_eq!(
                status_of(&mut c, &session).await?,
                pb::BindSessionStatus::Open as i32
            );
            // At another merchant too: the card is counted, not the shop.
            let mut b = stack.client(SHOP_B).await?;
            let elsewhere = open_session(&mut b, "tester-b").await?;
            let err = submit(&mut b, &elsewhere, CVV_MISMATCH, PHONE)
                .await
                .unwrap_err();
            assert_rate_limited(&err, "card", Duration::from_secs(86_400));

            // Other cards pass, until the merchant's minute is used up.
            for (user, card) in [("zhang-1", VISA), ("zhang-2", MASTERCARD)] {
                let session = open_session(&mut c, user).await?;
                submit(&mut c, &session, card, PHONE).await?;
            }
            let session = open_session(&mut c, "zhang-3").await?;
            let err = submit(&mut c, &session, UNIONPAY, PHONE).await.unwrap_err();
            assert_rate_limited(&err, "merchant", Duration::from_secs(60));
            // Another merchant has its own minute.
            let other = open_session(&mut b, "zhang-b").await?;
            submit(&mut b, &other, UNIONPAY, PHONE).await?;
            assert_eq!(card_checks(&stack).await?, 6);
            Ok(())
        }
        .await;
        (stack, result)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_go_to_a_phone_only_so_often() -> R {
    fn tune(s: &mut Settings) {
        s.velocity = limits(|l| l.codes_per_phone_per_hour = 2);
        s.sessions.resend_interval_secs = 1;
    }
    on_both(tune, |stack| async move {
        let result = async {
            let mut c = stack.client(SHOP_A).await?;
            let session = open_session(&mut c, "pumped").await?;
            submit(&mut c, &session, VISA, PHONE).await?;
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let resend = || pb::ResendBindCodeRequest {
                session_id: session.clone(),
            };
            c.resend_bind_code(resend()).await?;
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let err = c.resend_bind_code(resend()).await.unwrap_err();
            assert_rate_limited(&err, "phone", Duration::from_secs(3600));
            assert_eq!(stack.outbox().messages().len(), 2, "no third SMS");

            // Another of the holder's cards, another merchant: the same phone.
            let mut b = stack.client(SHOP_B).await?;
            let other = open_session(&mut b, "pumped-b").await?;
            let err = submit(&mut b, &other, MASTERCARD, PHONE).await.unwrap_err();
            assert_rate_limited(&err, "phone", Duration::from_secs(3600));
            assert_eq!(
                status_of(&mut b, &other).await?,
                pb::BindSessionStatus::Open as i32
            );
            assert_eq!(stack.outbox().messages().len(), 2);
            Ok(())
        }
        .await;
        (stack, result)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_does_not_start_the_guessing_over() -> R {
    fn tune(s: &mut Settings) {
        s.velocity = limits(|l| l.code_tries_per_session = 3);
        s.sessions.resend_interval_secs = 1;
    }
    on_both(tune, |stack| async move {
        let result = async {
            let mut c = stack.client(SHOP_A).await?;
            let session = open_session(&mut c, "guesser").await?;
            submit(&mut c, &session, VISA, PHONE).await?;
            let guess = |code: &str| pb::VerifyBindRequest {
                session_id: session.clone(),
                code: code.into(),
            };
            for _ in 0..2 {
                let err = c.verify_bind(guess("000000")).await.unwrap_err();
                assert_eq!(reason(&err), "WRONG_CODE");
            }
            tokio::time::sleep(Duration::from_millis(1100)).await;
            c.resend_bind_code(pb::ResendBindCodeRequest {
                session_id: session.clone(),
            })
            .await?;
            let err = c.verify_bind(guess("000000")).await.unwrap_err();
            assert_eq!(reason(&err), "WRONG_CODE", "the third try of three");
            // A fresh code's five tries would allow more; the session's
            // total does not, not even the right code.
            let right = stack.last_code(PHONE)?;
            let err = c.verify_bind(guess(&right)).await.unwrap_err();
            assert_eq!(reason(&err), "SESSION_FAILED", "{err:?}");
            assert_eq!(
                status_of(&mut c, &session).await?,
                pb::BindSessionStatus::Failed as i32
            );
            Ok(())
        }
        .await;
        (stack, result)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_tries_are_capped_per_phone_across_sessions() -> R {
    fn tune(s: &mut Settings) {
        s.velocity = limits(|l| l.code_tries_per_phone_per_day = 3);
    }
    on_both(tune, |stack| async move {
        let result = async {
            let mut c = stack.client(SHOP_A).await?;
            let first = open_session(&mut c, "guess-1").await?;
            submit(&mut c, &first, VISA, PHONE).await?;
            for _ in 0..3 {
                let err = c
                    .verify_bind(pb::VerifyBindRequest {
                        session_id: first.clone(),
                        code: "000000".into(),
                    })
                    .await
                    .unwrap_err();
                assert_eq!(reason(&err), "WRONG_CODE");
            }
            // A new session for the same holder: the phone's day is used up.
            let second = open_session(&mut c, "guess-2").await?;
            submit(&mut c, &second, MASTERCARD, PHONE).await?;
            let err = c
                .verify_bind(pb::VerifyBindRequest {
                    session_id: second.clone(),
                    code: stack.last_code(PHONE)?,
                })
                .await
                .unwrap_err();
            assert_rate_limited(&err, "phone", Duration::from_secs(86_400));
            assert_eq!(
                status_of(&mut c, &second).await?,
                pb::BindSessionStatus::AwaitingVerification as i32
            );
            Ok(())
        }
        .await;
        (stack, result)
    })
    .await
}
