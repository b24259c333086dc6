//! payment-svc driven as a merchant would drive it: over gRPC with mTLS, each
//! scenario on SQLite and on PostgreSQL.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashSet;

use paybind_tests::{
    cny, metadata_of, pb, reason, Stack, DAILY_LIMIT, PER_PAYMENT_LIMIT, RETURN_URL, SHOP_A,
    SHOP_B, SHOP_NO_DIRECT, UNREGISTERED,
};
use tonic::{transport::Channel, Code, Status};

type Client = pb::binding_service_client::BindingServiceClient<Channel>;
type R = anyhow::Result<()>;

const PHONE: &str = "+8613800138000";
const ID_NUMBER: &str = "11010519491231002X";
const VISA: &str = "4242424242424242";
const MASTERCARD: &str = "5555555555554444";
const DECLINED_AT_BINDING: &str = "4000000000000002";
const INSUFFICIENT_FUNDS: &str = "4000000000009995";

paybind_tests::on_both_backends!(with_merchant = false;
    bind_by_direct_entry_then_pay_without_a_code,
    binding_the_same_card_again_returns_the_same_binding,
    bind_requests_are_idempotent,
    bad_input_is_refused_with_a_reason_and_changes_nothing,
    wrong_codes_count_down_then_fail_the_session,
    resending_a_code_is_throttled,
    declined_cards_bind_nothing_and_declined_payments_are_recorded,
    auth_free_limits_hold_per_payment_per_day_and_under_concurrency,
    refunds_never_exceed_the_payment,
    unbind_then_pay_is_refused,
    another_merchant_or_user_cannot_use_a_token,
    pay_is_idempotent_and_concurrent_duplicates_charge_once,
    bind_and_pay_charges_then_binds,
    declined_bind_and_pay_creates_no_binding,
    list_bindings_pages_newest_first,
);

// ---------------------------------------------------------------- helpers

fn bind_request(user: &str, key: &str) -> pb::BindRequest {
    pb::BindRequest {
        merchant_user_id: user.into(),
        presentation: pb::Presentation::Redirect as i32,
        return_url: format!("{RETURN_URL}?user={user}"),
        prefill: Some(pb::ShopperPrefill {
            full_name: "Zhang San".into(),
            phone: PHONE.into(),
        }),
        idempotency_key: key.into(),
    }
}

fn submission(session_id: &str, card_number: &str) -> pb::SubmitBindInfoRequest {
    pb::SubmitBindInfoRequest {
        session_id: session_id.into(),
        shopper: Some(pb::ShopperInfo {
            full_name: "Zhang San".into(),
            id_number: ID_NUMBER.into(),
            phone: "138 0013 8000".into(),
        }),
        card: Some(pb::CardInfo {
            number: card_number.into(),
            expiry_month: 12,
            expiry_year: 2031,
            cvv: "123".into(),
        }),
    }
}

fn session_of<T>(r: tonic::Response<T>) -> anyhow::Result<pb::BindSession>
where
    T: HasSession,
{
    r.into_inner()
        .session()
        .ok_or_else(|| anyhow::anyhow!("no session"))
}

trait HasSession {
    fn session(self) -> Option<pb::BindSession>;
}
macro_rules! has_session {
    ($($t:ty),*) => { $(impl HasSession for $t { fn session(self) -> Option<pb::BindSession> { self.session } })* };
}
has_session!(
    pb::BindResponse,
    pb::BindAndPayResponse,
    pb::GetBindSessionResponse,
    pb::SubmitBindInfoResponse,
    pb::ResendBindCodeResponse,
    pb::VerifyBindResponse
);

async fn verify(
    stack: &Stack,
    c: &mut Client,
    session_id: &str,
) -> anyhow::Result<pb::BindSession> {
    let code = stack.last_code(PHONE)?;
    session_of(
        c.verify_bind(pb::VerifyBindRequest {
            session_id: session_id.into(),
            code,
        })
        .await?,
    )
}

/// Binds `card_number` for `user` by direct entry; returns the binding.
async fn bind_card(
    stack: &Stack,
    c: &mut Client,
    user: &str,
    card_number: &str,
) -> anyhow::Result<pb::Binding> {
    let key = format!("bind-{user}-{}", paybind_shared::ids::new_id("k"));
    let session = session_of(c.bind(bind_request(user, &key)).await?)?;
    c.submit_bind_info(submission(&session.session_id, card_number))
        .await?;
    let done = verify(stack, c, &session.session_id).await?;
    anyhow::ensure!(
        done.status == pb::BindSessionStatus::Completed as i32,
        "not completed"
    );
    done.binding
        .ok_or_else(|| anyhow::anyhow!("completed session without binding"))
}

fn pay_request(token: &str, user: &str, order: &str, amount: i64, key: &str) -> pb::PayRequest {
    pb::PayRequest {
        binding_token: token.into(),
        merchant_user_id: user.into(),
        merchant_order_id: order.into(),
        amount: cny(amount),
        description: "Green tea".into(),
        idempotency_key: key.into(),
    }
}

async fn pay(
    c: &mut Client,
    token: &str,
    user: &str,
    amount: i64,
    key: &str,
) -> Result<pb::Payment, Status> {
    let order = format!("order-{key}");
    let r = c.pay(pay_request(token, user, &order, amount, key)).await?;
    r.into_inner()
        .payment
        .ok_or_else(|| Status::internal("no payment"))
}

async fn remaining_today(c: &mut Client, user: &str, binding_id: &str) -> anyhow::Result<i64> {
    let list = c
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: user.into(),
            page_size: 100,
            page_token: String::new(),
            include_revoked: true,
        })
        .await?
        .into_inner();
    let b = list
        .bindings
        .into_iter()
        .find(|b| b.binding_id == binding_id)
        .ok_or_else(|| anyhow::anyhow!("binding not listed"))?;
    Ok(b.limits
        .and_then(|l| l.remaining_today)
        .map(|m| m.amount_minor)
        .unwrap_or(-1))
}

fn amount(m: &Option<pb::Money>) -> i64 {
    m.as_ref().map(|m| m.amount_minor).unwrap_or(-1)
}

// -------------------------------------------------------------- scenarios

async fn bind_by_direct_entry_then_pay_without_a_code(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let opened = session_of(c.bind(bind_request("alice", "bind-alice-1")).await?)?;
    assert_eq!(opened.status, pb::BindSessionStatus::Open as i32);
    assert_eq!(opened.kind, pb::BindSessionKind::Bind as i32);
    assert_eq!(opened.attempts_left, 3);
    assert!(opened
        .binding_page_url
        .ends_with(&format!("/bind/{}", opened.session_id)));
    assert!(opened.expire_time.is_some());

    let awaiting = session_of(
        c.submit_bind_info(submission(&opened.session_id, VISA))
            .await?,
    )?;
    assert_eq!(
        awaiting.status,
        pb::BindSessionStatus::AwaitingVerification as i32
    );
    assert_eq!(awaiting.code_sent_to, "+86 138****8000");
    assert!(awaiting.binding.is_none(), "no binding before the code");

    let done = verify(stack, &mut c, &opened.session_id).await?;
    assert_eq!(done.status, pb::BindSessionStatus::Completed as i32);
    let binding = done.binding.clone().expect("binding");
    assert!(binding.binding_token.starts_with("pbt_"));
    assert_eq!(binding.merchant_user_id, "alice");
    assert_eq!(binding.status, pb::BindingStatus::Active as i32);
    let card = binding.card.clone().expect("card summary");
    assert_eq!(
        (card.brand, card.last4.as_str()),
        (pb::CardBrand::Visa as i32, "4242")
    );
    assert_eq!((card.expiry_month, card.expiry_year), (12, 2031));
    let limits = binding.limits.clone().expect("limits");
    assert_eq!(amount(&limits.per_payment), PER_PAYMENT_LIMIT);
    assert_eq!(amount(&limits.per_day), DAILY_LIMIT);
    assert_eq!(amount(&limits.remaining_today), DAILY_LIMIT);

    // The merchant reads the outcome server-to-server, and a retried verify
    // returns the same completed session.
    let fetched = session_of(
        c.get_bind_session(pb::GetBindSessionRequest {
            session_id: opened.session_id.clone(),
        })
        .await?,
    )?;
    assert_eq!(
        fetched.binding.as_ref().map(|b| &b.binding_token),
        Some(&binding.binding_token)
    );
    let again = verify(stack, &mut c, &opened.session_id).await?;
    assert_eq!(
        again.binding.map(|b| b.binding_id),
        Some(binding.binding_id.clone())
    );

    // Paying needs no code: nothing more is sent to the shopper.
    let codes_sent = stack.outbox().messages().len();
    let paid = pay(&mut c, &binding.binding_token, "alice", 1_999, "pay-1").await?;
    assert_eq!(paid.status, pb::PaymentStatus::Succeeded as i32);
    assert_eq!(amount(&paid.amount), 1_999);
    assert_eq!(paid.binding_id, binding.binding_id);
    assert!(!paid.shopper_authenticated);
    assert_eq!(stack.outbox().messages().len(), codes_sent);
    assert_eq!(stack.acquirer.approved_charges(), 1);

    let got = c
        .get_payment(pb::GetPaymentRequest {
            payment_id: paid.payment_id.clone(),
        })
        .await?
        .into_inner()
        .payment
        .expect("payment");
    assert_eq!(got.payment_id, paid.payment_id);
    assert_eq!(got.status, pb::PaymentStatus::Succeeded as i32);
    assert_eq!(
        remaining_today(&mut c, "alice", &binding.binding_id).await?,
        DAILY_LIMIT - 1_999
    );
    Ok(())
}

async fn binding_the_same_card_again_returns_the_same_binding(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let first = bind_card(stack, &mut c, "bob", VISA).await?;
    let second = bind_card(stack, &mut c, "bob", "4242-4242-4242-4242").await?;
    assert_eq!(first.binding_id, second.binding_id);
    assert_eq!(first.binding_token, second.binding_token);
    let other_card = bind_card(stack, &mut c, "bob", MASTERCARD).await?;
    assert_ne!(other_card.binding_id, first.binding_id);
    // Another user binding the same card gets a binding of their own.
    let carol = bind_card(stack, &mut c, "carol", VISA).await?;
    assert_ne!(carol.binding_id, first.binding_id);
    Ok(())
}

async fn bind_requests_are_idempotent(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let a = session_of(c.bind(bind_request("dave", "bind-dave")).await?)?;
    let b = session_of(c.bind(bind_request("dave", "bind-dave")).await?)?;
    assert_eq!(
        a.session_id, b.session_id,
        "a retry returns the same session"
    );
    let err = c
        .bind(bind_request("erin", "bind-dave"))
        .await
        .expect_err("same key, other request");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(reason(&err), "IDEMPOTENCY_KEY_REUSED");
    // The key is per merchant: another merchant may use it.
    let mut other = stack.client(SHOP_B).await?;
    let c2 = session_of(other.bind(bind_request("dave", "bind-dave")).await?)?;
    assert_ne!(c2.session_id, a.session_id);
    Ok(())
}

async fn bad_input_is_refused_with_a_reason_and_changes_nothing(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let session = session_of(c.bind(bind_request("frank", "bind-frank")).await?)?;
    let id = session.session_id.clone();

    type Mutation = Box<dyn Fn(&mut pb::SubmitBindInfoRequest)>;
    let cases: Vec<(Mutation, &str, &str)> = vec![
        (
            Box::new(|r| r.card.as_mut().expect("card").number = "4242424242424241".into()),
            "INVALID_CARD_NUMBER",
            "card.number",
        ),
        (
            Box::new(|r| r.card.as_mut().expect("card").number = "4242".into()),
            "INVALID_CARD_NUMBER",
            "card.number",
        ),
        (
            // An earlier year: the year is what is wrong.
            Box::new(|r| r.card.as_mut().expect("card").expiry_year = 2020),
            "INVALID_EXPIRY",
            "card.expiry_year",
        ),
        (
            Box::new(|r| r.card.as_mut().expect("card").expiry_year = 30),
            "INVALID_EXPIRY",
            "card.expiry_year",
        ),
        (
            Box::new(|r| r.card.as_mut().expect("card").expiry_month = 13),
            "INVALID_EXPIRY",
            "card.expiry_month",
        ),
        (
            Box::new(|r| r.card.as_mut().expect("card").cvv = "12".into()),
            "INVALID_CVV",
            "card.cvv",
        ),
        (
            Box::new(|r| {
                r.shopper.as_mut().expect("shopper").id_number = "110105194912310021".into()
            }),
            "INVALID_ID_NUMBER",
            "shopper.id_number",
        ),
        (
            Box::new(|r| r.shopper.as_mut().expect("shopper").phone = "12345".into()),
            "INVALID_PHONE",
            "shopper.phone",
        ),
        (
            Box::new(|r| r.shopper.as_mut().expect("shopper").full_name = " ".into()),
            "INVALID_ARGUMENT",
            "shopper.full_name",
        ),
        (
            Box::new(|r| r.shopper = None),
            "INVALID_ARGUMENT",
            "shopper.full_name",
        ),
    ];
    for (mutate, want_reason, want_field) in cases {
        let mut request = submission(&id, VISA);
        mutate(&mut request);
        let err = c.submit_bind_info(request).await.expect_err(want_reason);
        assert_eq!(err.code(), Code::InvalidArgument, "{want_reason}");
        assert_eq!(reason(&err), want_reason);
        assert_eq!(
            metadata_of(&err).get("field").map(String::as_str),
            Some(want_field)
        );
        assert!(
            !err.message().contains("4242424242"),
            "no card number in errors"
        );
        assert!(
            !err.message().contains("11010519491231"),
            "no ID number in errors"
        );
    }
    let after = session_of(
        c.get_bind_session(pb::GetBindSessionRequest {
            session_id: id.clone(),
        })
        .await?,
    )?;
    assert_eq!(
        after.status,
        pb::BindSessionStatus::Open as i32,
        "nothing changed"
    );
    assert_eq!(after.attempts_left, 3, "no attempt used");
    assert!(stack.outbox().messages().is_empty(), "no code sent");

    // Binding requests.
    let mut bad_url = bind_request("frank", "k-url");
    bad_url.return_url = "https://shop.example.evil.com/bind/return".into();
    assert_eq!(
        reason(&c.bind(bad_url).await.expect_err("url")),
        "RETURN_URL_NOT_ALLOWED"
    );
    let mut no_presentation = bind_request("frank", "k-pres");
    no_presentation.presentation = 0;
    assert_eq!(
        reason(&c.bind(no_presentation).await.expect_err("pres")),
        "INVALID_ARGUMENT"
    );
    let mut bad_user = bind_request("frank smith", "k-user");
    bad_user.merchant_user_id = "frank smith".into();
    assert_eq!(
        reason(&c.bind(bad_user).await.expect_err("user")),
        "INVALID_ARGUMENT"
    );
    let mut no_key = bind_request("frank", "");
    no_key.idempotency_key.clear();
    assert_eq!(
        reason(&c.bind(no_key).await.expect_err("key")),
        "INVALID_ARGUMENT"
    );

    // Money.
    let binding = bind_card(stack, &mut c, "frank", VISA).await?;
    let token = binding.binding_token.clone();
    for (amount, currency, want) in [
        (0, "CNY", "INVALID_AMOUNT"),
        (-5, "CNY", "INVALID_AMOUNT"),
        (100_000_000_001, "CNY", "INVALID_AMOUNT"),
        (100, "ABC", "UNKNOWN_CURRENCY"),
        (100, "cny", "UNKNOWN_CURRENCY"),
        (100, "USD", "CURRENCY_NOT_ACCEPTED"),
    ] {
        let mut request = pay_request(&token, "frank", "o-bad", 1, "k-bad-money");
        request.amount = Some(pb::Money {
            amount_minor: amount,
            currency: currency.into(),
        });
        let err = c.pay(request).await.expect_err(want);
        assert_eq!(
            (err.code(), reason(&err).as_str()),
            (Code::InvalidArgument, want)
        );
    }
    let mut no_amount = pay_request(&token, "frank", "o", 1, "k-none");
    no_amount.amount = None;
    assert_eq!(
        reason(&c.pay(no_amount).await.expect_err("none")),
        "INVALID_AMOUNT"
    );
    assert_eq!(stack.acquirer.approved_charges(), 0, "nothing charged");
    assert_eq!(
        remaining_today(&mut c, "frank", &binding.binding_id).await?,
        DAILY_LIMIT
    );
    // The key of a refused request is still free.
    let ok = pay(&mut c, &token, "frank", 100, "k-bad-money").await?;
    assert_eq!(ok.status, pb::PaymentStatus::Succeeded as i32);
    Ok(())
}

async fn wrong_codes_count_down_then_fail_the_session(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let s = session_of(c.bind(bind_request("gina", "bind-gina")).await?)?;
    c.submit_bind_info(submission(&s.session_id, VISA)).await?;
    let right = stack.last_code(PHONE)?;
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for tries_left in (1..=4).rev() {
        let err = c
            .verify_bind(pb::VerifyBindRequest {
                session_id: s.session_id.clone(),
                code: wrong.into(),
            })
            .await
            .expect_err("wrong code");
        assert_eq!(reason(&err), "WRONG_CODE");
        assert_eq!(
            metadata_of(&err).get("tries_left"),
            Some(&tries_left.to_string())
        );
    }
    let err = c
        .verify_bind(pb::VerifyBindRequest {
            session_id: s.session_id.clone(),
            code: wrong.into(),
        })
        .await
        .expect_err("fifth wrong code");
    assert_eq!(reason(&err), "SESSION_FAILED");
    // Even the right code no longer works.
    let err = c
        .verify_bind(pb::VerifyBindRequest {
            session_id: s.session_id.clone(),
            code: right,
        })
        .await
        .expect_err("failed session");
    assert_eq!(reason(&err), "SESSION_FAILED");
    let after = session_of(
        c.get_bind_session(pb::GetBindSessionRequest {
            session_id: s.session_id.clone(),
        })
        .await?,
    )?;
    assert_eq!(after.status, pb::BindSessionStatus::Failed as i32);
    assert!(after.binding.is_none());
    // A code before any submission is refused as out of order.
    let fresh = session_of(c.bind(bind_request("gina", "bind-gina-2")).await?)?;
    let err = c
        .verify_bind(pb::VerifyBindRequest {
            session_id: fresh.session_id,
            code: "123456".into(),
        })
        .await
        .expect_err("no code yet");
    assert_eq!(reason(&err), "SESSION_STATE");
    Ok(())
}

async fn resending_a_code_is_throttled(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let s = session_of(c.bind(bind_request("hal", "bind-hal")).await?)?;
    c.submit_bind_info(submission(&s.session_id, VISA)).await?;
    let err = c
        .resend_bind_code(pb::ResendBindCodeRequest {
            session_id: s.session_id.clone(),
        })
        .await
        .expect_err("too soon");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(reason(&err), "RESEND_THROTTLED");
    let retry = tonic_types::StatusExt::get_error_details(&err)
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("retry delay");
    assert!(retry.as_secs() <= 30 && retry.as_millis() > 0);
    assert_eq!(stack.outbox().messages().len(), 1);
    Ok(())
}

async fn declined_cards_bind_nothing_and_declined_payments_are_recorded(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let s = session_of(c.bind(bind_request("ivy", "bind-ivy")).await?)?;
    let err = c
        .submit_bind_info(submission(&s.session_id, DECLINED_AT_BINDING))
        .await
        .expect_err("declined");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), "CARD_NOT_VERIFIED");
    let meta = metadata_of(&err);
    assert_eq!(
        meta.get("decline_reason"),
        None,
        "why the issuer refused is not told"
    );
    assert_eq!(meta.get("attempts_left").map(String::as_str), Some("2"));
    let after = session_of(
        c.get_bind_session(pb::GetBindSessionRequest {
            session_id: s.session_id.clone(),
        })
        .await?,
    )?;
    assert_eq!(after.status, pb::BindSessionStatus::Open as i32);
    assert_eq!(after.last_error_reason, "CARD_NOT_VERIFIED");
    assert!(
        stack.outbox().messages().is_empty(),
        "no code for a declined card"
    );

    // Another card in the same session works.
    c.submit_bind_info(submission(&s.session_id, INSUFFICIENT_FUNDS))
        .await?;
    let done = verify(stack, &mut c, &s.session_id).await?;
    let binding = done.binding.expect("binding");

    // This card binds but its charges are declined: a recorded payment.
    let declined = pay(&mut c, &binding.binding_token, "ivy", 5_000, "pay-ivy-1").await?;
    assert_eq!(declined.status, pb::PaymentStatus::Declined as i32);
    assert_eq!(declined.decline_reason, "INSUFFICIENT_FUNDS");
    let fetched = c
        .get_payment(pb::GetPaymentRequest {
            payment_id: declined.payment_id.clone(),
        })
        .await?
        .into_inner()
        .payment
        .expect("payment");
    assert_eq!(fetched.status, pb::PaymentStatus::Declined as i32);
    assert_eq!(
        remaining_today(&mut c, "ivy", &binding.binding_id).await?,
        DAILY_LIMIT,
        "a decline uses no limit"
    );
    // Concurrent declines are recorded in batches; each gives its amount back.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut client = c.clone();
        let token = binding.binding_token.clone();
        tasks.push(tokio::spawn(async move {
            pay(&mut client, &token, "ivy", 7_000, &format!("ivy-many-{i}")).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await??.status, pb::PaymentStatus::Declined as i32);
    }
    assert_eq!(
        remaining_today(&mut c, "ivy", &binding.binding_id).await?,
        DAILY_LIMIT,
        "every decline released"
    );
    let err = c
        .refund(pb::RefundRequest {
            payment_id: declined.payment_id,
            amount: cny(100),
            reason: String::new(),
            idempotency_key: "rf-ivy".into(),
        })
        .await
        .expect_err("declined payments are not refundable");
    assert_eq!(reason(&err), "PAYMENT_NOT_REFUNDABLE");
    assert_eq!(stack.acquirer.approved_charges(), 0);
    Ok(())
}

async fn auth_free_limits_hold_per_payment_per_day_and_under_concurrency(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let b = bind_card(stack, &mut c, "jack", VISA).await?;
    let token = b.binding_token.clone();
    let err = pay(&mut c, &token, "jack", PER_PAYMENT_LIMIT + 1, "big")
        .await
        .expect_err("over per-payment");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), "LIMIT_EXCEEDED");
    assert_eq!(
        metadata_of(&err).get("per_payment_limit"),
        Some(&PER_PAYMENT_LIMIT.to_string())
    );

    // 10 concurrent payments of 30,000 against a 200,000 day: exactly 6 fit.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let mut client = c.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            pay(&mut client, &token, "jack", 30_000, &format!("jack-{i}")).await
        }));
    }
    let mut succeeded = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await? {
            Ok(p) if p.status == pb::PaymentStatus::Succeeded as i32 => succeeded += 1,
            Err(e) if reason(&e) == "LIMIT_EXCEEDED" => limited += 1,
            other => anyhow::bail!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((succeeded, limited), (6, 4));
    assert_eq!(
        remaining_today(&mut c, "jack", &b.binding_id).await?,
        20_000
    );
    let err = pay(&mut c, &token, "jack", 20_001, "over-day")
        .await
        .expect_err("over the day");
    assert_eq!(
        metadata_of(&err).get("remaining_today").map(String::as_str),
        Some("20000")
    );
    pay(&mut c, &token, "jack", 20_000, "exactly-the-rest").await?;
    assert_eq!(remaining_today(&mut c, "jack", &b.binding_id).await?, 0);
    assert_eq!(stack.acquirer.net_charged(), DAILY_LIMIT);
    Ok(())
}

async fn refunds_never_exceed_the_payment(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let b = bind_card(stack, &mut c, "kim", VISA).await?;
    let paid = pay(&mut c, &b.binding_token, "kim", 10_000, "kim-pay").await?;
    let refund = |amount: i64, key: &str| pb::RefundRequest {
        payment_id: paid.payment_id.clone(),
        amount: cny(amount),
        reason: "damaged".into(),
        idempotency_key: key.into(),
    };
    let first = c.refund(refund(4_000, "rf-1")).await?.into_inner();
    let r1 = first.refund.expect("refund");
    assert_eq!(r1.status, pb::RefundStatus::Succeeded as i32);
    assert_eq!(amount(&first.payment.expect("payment").refunded), 4_000);
    let replay = c.refund(refund(4_000, "rf-1")).await?.into_inner();
    assert_eq!(
        replay.refund.expect("refund").refund_id,
        r1.refund_id,
        "idempotent"
    );
    assert_eq!(
        amount(&replay.payment.expect("payment").refunded),
        4_000,
        "not refunded twice"
    );
    let err = c
        .refund(refund(5_000, "rf-1"))
        .await
        .expect_err("key reused");
    assert_eq!(reason(&err), "IDEMPOTENCY_KEY_REUSED");
    let err = c.refund(refund(7_000, "rf-2")).await.expect_err("too much");
    assert_eq!(reason(&err), "REFUND_EXCEEDS_PAYMENT");
    assert_eq!(
        metadata_of(&err).get("refundable").map(String::as_str),
        Some("6000")
    );

    // Concurrent refunds of 1,000 against the 6,000 left: exactly 6 succeed.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let mut client = c.clone();
        let request = refund(1_000, &format!("rf-c-{i}"));
        tasks.push(tokio::spawn(async move { client.refund(request).await }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await? {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(reason(&e), "REFUND_EXCEEDS_PAYMENT"),
        }
    }
    assert_eq!(ok, 6);
    let after = c
        .get_payment(pb::GetPaymentRequest {
            payment_id: paid.payment_id.clone(),
        })
        .await?
        .into_inner()
        .payment
        .expect("payment");
    assert_eq!(amount(&after.refunded), 10_000);
    assert_eq!(stack.acquirer.net_charged(), 0, "the acquirer agrees");
    let err = c
        .refund(refund(1, "rf-last"))
        .await
        .expect_err("nothing left");
    assert_eq!(reason(&err), "REFUND_EXCEEDS_PAYMENT");
    Ok(())
}

async fn unbind_then_pay_is_refused(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let b = bind_card(stack, &mut c, "lee", VISA).await?;
    let unbound = c
        .unbind(pb::UnbindRequest {
            binding_token: b.binding_token.clone(),
            merchant_user_id: "lee".into(),
            reason: "user removed the card".into(),
        })
        .await?
        .into_inner()
        .binding
        .expect("binding");
    assert_eq!(unbound.status, pb::BindingStatus::Revoked as i32);
    assert_eq!(unbound.revoke_reason, "user removed the card");
    assert!(unbound.revoke_time.is_some());
    let err = pay(&mut c, &b.binding_token, "lee", 100, "after-unbind")
        .await
        .expect_err("revoked");
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::FailedPrecondition, "BINDING_REVOKED")
    );
    let again = c
        .unbind(pb::UnbindRequest {
            binding_token: b.binding_token.clone(),
            merchant_user_id: "lee".into(),
            reason: "again".into(),
        })
        .await?
        .into_inner()
        .binding
        .expect("binding");
    assert_eq!(again.revoke_reason, "user removed the card", "unchanged");
    // Listing hides revoked bindings unless asked.
    let active = c
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: "lee".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(active.bindings.is_empty());
    // Binding the card again makes a new binding with a new token.
    let rebound = bind_card(stack, &mut c, "lee", VISA).await?;
    assert_ne!(rebound.binding_token, b.binding_token);
    pay(&mut c, &rebound.binding_token, "lee", 100, "after-rebind").await?;
    Ok(())
}

async fn another_merchant_or_user_cannot_use_a_token(stack: &Stack) -> R {
    let mut a = stack.client(SHOP_A).await?;
    let mut b = stack.client(SHOP_B).await?;
    let binding = bind_card(stack, &mut a, "mia", VISA).await?;
    let paid = pay(&mut a, &binding.binding_token, "mia", 100, "mia-1").await?;

    let err = pay(&mut b, &binding.binding_token, "mia", 100, "steal")
        .await
        .expect_err("other merchant");
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::NotFound, "TOKEN_NOT_FOUND")
    );
    let err = pay(
        &mut a,
        &binding.binding_token,
        "someone-else",
        100,
        "other-user",
    )
    .await
    .expect_err("other user");
    assert_eq!(reason(&err), "TOKEN_NOT_FOUND");
    let err = pay(&mut a, "pbt_not-a-token", "mia", 100, "garbage")
        .await
        .expect_err("garbage");
    assert_eq!(reason(&err), "TOKEN_NOT_FOUND");
    let err = b
        .get_payment(pb::GetPaymentRequest {
            payment_id: paid.payment_id.clone(),
        })
        .await
        .expect_err("other merchant's payment");
    assert_eq!(reason(&err), "PAYMENT_NOT_FOUND");
    let err = b
        .unbind(pb::UnbindRequest {
            binding_token: binding.binding_token.clone(),
            merchant_user_id: "mia".into(),
            reason: String::new(),
        })
        .await
        .expect_err("other merchant's binding");
    assert_eq!(reason(&err), "TOKEN_NOT_FOUND");
    let session = session_of(a.bind(bind_request("mia", "bind-mia-2")).await?)?;
    let err = b
        .get_bind_session(pb::GetBindSessionRequest {
            session_id: session.session_id.clone(),
        })
        .await
        .expect_err("other merchant's session");
    assert_eq!(reason(&err), "SESSION_NOT_FOUND");
    let listed = b
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: "mia".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(listed.bindings.is_empty());

    // A certificate from the right CA but of no registered merchant.
    let mut stranger = stack.client(UNREGISTERED).await?;
    let err = stranger
        .bind(bind_request("x", "k"))
        .await
        .expect_err("unregistered");
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::Unauthenticated, "UNKNOWN_MERCHANT")
    );
    // A registered merchant without direct entry cannot send card data.
    let mut limited = stack.client(SHOP_NO_DIRECT).await?;
    let s = session_of(limited.bind(bind_request("x", "k")).await?)?;
    let err = limited
        .submit_bind_info(submission(&s.session_id, VISA))
        .await
        .expect_err("no direct entry");
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::PermissionDenied, "DIRECT_ENTRY_NOT_ALLOWED")
    );
    assert_eq!(stack.acquirer.approved_charges(), 1);
    Ok(())
}

async fn pay_is_idempotent_and_concurrent_duplicates_charge_once(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let b = bind_card(stack, &mut c, "ned", VISA).await?;
    let first = pay(&mut c, &b.binding_token, "ned", 1_000, "ned-1").await?;
    let replay = pay(&mut c, &b.binding_token, "ned", 1_000, "ned-1").await?;
    assert_eq!(first.payment_id, replay.payment_id);
    assert_eq!(stack.acquirer.approved_charges(), 1);
    let err = pay(&mut c, &b.binding_token, "ned", 2_000, "ned-1")
        .await
        .expect_err("reused");
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::InvalidArgument, "IDEMPOTENCY_KEY_REUSED")
    );

    // 50 concurrent copies of one request: one payment, one charge.
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let mut client = c.clone();
        let token = b.binding_token.clone();
        tasks.push(tokio::spawn(async move {
            pay(&mut client, &token, "ned", 3_000, "ned-dup").await
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        let p = t.await??;
        assert_eq!(p.status, pb::PaymentStatus::Succeeded as i32);
        ids.insert(p.payment_id);
    }
    assert_eq!(ids.len(), 1, "every duplicate got the same payment");
    assert_eq!(stack.acquirer.approved_charges(), 2);
    assert_eq!(stack.acquirer.net_charged(), 4_000);
    assert_eq!(
        remaining_today(&mut c, "ned", &b.binding_id).await?,
        DAILY_LIMIT - 4_000
    );
    Ok(())
}

fn bind_and_pay_request(user: &str, amount: i64, key: &str) -> pb::BindAndPayRequest {
    let base = bind_request(user, key);
    pb::BindAndPayRequest {
        merchant_user_id: base.merchant_user_id,
        presentation: pb::Presentation::Popup as i32,
        return_url: base.return_url,
        prefill: base.prefill,
        payment: Some(pb::PaymentDetails {
            merchant_order_id: format!("order-{key}"),
            amount: cny(amount),
            description: "A teapot".into(),
        }),
        idempotency_key: key.into(),
    }
}

async fn bind_and_pay_charges_then_binds(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    // Above the per-payment limit: the shopper authenticates this one.
    let big = PER_PAYMENT_LIMIT + 30_000;
    let s = session_of(
        c.bind_and_pay(bind_and_pay_request("olga", big, "bp-olga"))
            .await?,
    )?;
    assert_eq!(s.kind, pb::BindSessionKind::BindAndPay as i32);
    let details = s.payment_details.clone().expect("payment details");
    assert_eq!(amount(&details.amount), big);
    c.submit_bind_info(submission(&s.session_id, VISA)).await?;
    let sms = stack.outbox().messages().pop().expect("sms");
    assert!(
        sms.text.contains("pay 800.00 CNY"),
        "the code says what is paid: {}",
        sms.text
    );
    let done = verify(stack, &mut c, &s.session_id).await?;
    assert_eq!(done.status, pb::BindSessionStatus::Completed as i32);
    let payment = done.payment.expect("payment");
    let binding = done.binding.expect("binding");
    assert_eq!(payment.status, pb::PaymentStatus::Succeeded as i32);
    assert!(payment.shopper_authenticated);
    assert_eq!(amount(&payment.amount), big);
    assert_eq!(payment.binding_id, binding.binding_id);
    assert_eq!(
        remaining_today(&mut c, "olga", &binding.binding_id).await?,
        DAILY_LIMIT,
        "outside the limits"
    );
    assert_eq!(stack.acquirer.approved_charges(), 1);
    // Retrying the verify does not charge again.
    verify(stack, &mut c, &s.session_id).await?;
    assert_eq!(stack.acquirer.approved_charges(), 1);
    // From now on the token pays without a code.
    let next = pay(&mut c, &binding.binding_token, "olga", 500, "olga-2").await?;
    assert_eq!(next.status, pb::PaymentStatus::Succeeded as i32);
    // The payment is refundable like any other.
    let refunded = c
        .refund(pb::RefundRequest {
            payment_id: payment.payment_id,
            amount: cny(big),
            reason: String::new(),
            idempotency_key: "olga-rf".into(),
        })
        .await?
        .into_inner();
    assert_eq!(amount(&refunded.payment.expect("payment").refunded), big);
    Ok(())
}

async fn declined_bind_and_pay_creates_no_binding(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let s = session_of(
        c.bind_and_pay(bind_and_pay_request("paul", 2_000, "bp-paul"))
            .await?,
    )?;
    c.submit_bind_info(submission(&s.session_id, INSUFFICIENT_FUNDS))
        .await?;
    let code = stack.last_code(PHONE)?;
    let err = c
        .verify_bind(pb::VerifyBindRequest {
            session_id: s.session_id.clone(),
            code,
        })
        .await
        .expect_err("declined charge");
    assert_eq!(reason(&err), "CARD_DECLINED");
    assert_eq!(
        metadata_of(&err).get("decline_reason").map(String::as_str),
        Some("INSUFFICIENT_FUNDS")
    );
    let listed = c
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: "paul".into(),
            include_revoked: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(
        listed.bindings.is_empty(),
        "no binding after a declined charge"
    );
    let after = session_of(
        c.get_bind_session(pb::GetBindSessionRequest {
            session_id: s.session_id.clone(),
        })
        .await?,
    )?;
    assert_eq!(after.status, pb::BindSessionStatus::Open as i32);
    assert_eq!(after.attempts_left, 2);
    assert!(after.payment.is_none() && after.binding.is_none());

    // Another card within the attempt limit.
    c.submit_bind_info(submission(&s.session_id, MASTERCARD))
        .await?;
    let done = verify(stack, &mut c, &s.session_id).await?;
    assert_eq!(done.status, pb::BindSessionStatus::Completed as i32);
    assert_eq!(
        done.binding
            .and_then(|b| b.card)
            .map(|c| c.last4)
            .as_deref(),
        Some("4444")
    );
    assert_eq!(
        done.payment.map(|p| p.status),
        Some(pb::PaymentStatus::Succeeded as i32)
    );
    assert_eq!(stack.acquirer.approved_charges(), 1);
    Ok(())
}

async fn list_bindings_pages_newest_first(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let mut made = Vec::new();
    for card in [VISA, MASTERCARD, "6200000000000005"] {
        made.push(bind_card(stack, &mut c, "quinn", card).await?.binding_id);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_bindings(pb::ListBindingsRequest {
                merchant_user_id: "quinn".into(),
                page_size: 2,
                page_token: token.clone(),
                include_revoked: false,
            })
            .await?
            .into_inner();
        assert!(page.bindings.len() <= 2);
        seen.extend(page.bindings.into_iter().map(|b| b.binding_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    made.reverse();
    assert_eq!(seen, made, "every binding once, newest first");
    let err = c
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: "quinn".into(),
            page_size: 2,
            page_token: "garbage!".into(),
            include_revoked: false,
        })
        .await
        .expect_err("bad token");
    assert_eq!(reason(&err), "INVALID_ARGUMENT");
    Ok(())
}
