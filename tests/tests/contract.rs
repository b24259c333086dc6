//! What the `.proto` comments promise, checked as a new client would check
//! them: every rejected field listed, reasons and metadata as documented,
//! presentations, phones, idempotency keys and names as the contract says,
//! and a reason even for bytes no generated client would send.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;

use paybind_tests::{
    channel_to, cny,
    fixtures::{card, shopper, PHONE, VISA},
    metadata_of, mpb, pb, raw_call, reason, run_scenario, Backend, Stack, OPERATOR,
    PER_PAYMENT_LIMIT, RETURN_URL, SHOP_A,
};
use prost::Message;
use tonic::{transport::Channel, Code, Status};
use tonic_types::StatusExt;

type Client = pb::binding_service_client::BindingServiceClient<Channel>;
type Shop = mpb::merchant_service_client::MerchantServiceClient<Channel>;
type R = anyhow::Result<()>;

const INSUFFICIENT_FUNDS: &str = "4000000000009995";
const RIGHT_TO_LEFT_OVERRIDE: char = '\u{202E}';

paybind_tests::on_both_backends!(with_merchant = true;
    bad_request_lists_every_rejected_field,
    limit_exceeded_carries_the_documented_metadata,
    idempotency_keys_take_any_characters_but_controls,
    names_with_bidirectional_controls_are_refused,
    the_shop_refuses_unknown_presentations_and_takes_unset_as_redirect,
    create_user_refuses_a_phone_it_could_never_prefill,
    a_bind_and_pay_failed_by_its_last_code_cancels_the_order_at_once,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_the_message_get_a_reason() -> R {
    run_scenario(Backend::Sqlite, true, |s| {
        Box::pin(malformed_and_oversize_requests(s))
    })
    .await
}

// ---------------------------------------------------------------- helpers

fn bind_request(user: &str, key: &str) -> pb::BindRequest {
    pb::BindRequest {
        merchant_user_id: user.into(),
        presentation: pb::Presentation::Redirect as i32,
        return_url: RETURN_URL.into(),
        prefill: None,
        idempotency_key: key.into(),
    }
}

fn submission(session_id: &str, card_number: &str) -> pb::SubmitBindInfoRequest {
    pb::SubmitBindInfoRequest {
        session_id: session_id.into(),
        shopper: Some(shopper("Zhang San")),
        card: Some(card(card_number)),
    }
}

async fn open_session(c: &mut Client, user: &str, key: &str) -> anyhow::Result<String> {
    Ok(c.bind(bind_request(user, key))
        .await?
        .into_inner()
        .session
        .expect("session")
        .session_id)
}

async fn session(c: &mut Client, id: &str) -> anyhow::Result<pb::BindSession> {
    Ok(c.get_bind_session(pb::GetBindSessionRequest {
        session_id: id.into(),
    })
    .await?
    .into_inner()
    .session
    .expect("session"))
}

/// The fields a `BadRequest` detail names, in order.
fn rejected_fields(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

async fn bind_card(stack: &Stack, c: &mut Client, user: &str) -> anyhow::Result<pb::Binding> {
    let id = open_session(c, user, &format!("bind-{user}")).await?;
    c.submit_bind_info(submission(&id, VISA)).await?;
    let done = c
        .verify_bind(pb::VerifyBindRequest {
            session_id: id,
            code: stack.last_code(PHONE)?,
        })
        .await?
        .into_inner()
        .session
        .expect("session");
    Ok(done.binding.expect("binding"))
}

async fn create_user(shop: &mut Shop, id: &str) -> anyhow::Result<()> {
    shop.create_user(mpb::CreateUserRequest {
        user_id: id.into(),
        display_name: "Zhang San".into(),
        phone: PHONE.into(),
    })
    .await?;
    Ok(())
}

fn checkout_request(user: &str, presentation: i32, key: &str) -> mpb::CheckoutRequest {
    mpb::CheckoutRequest {
        user_id: user.into(),
        amount: cny(3_000),
        description: "Green tea".into(),
        presentation,
        return_url: String::new(),
        idempotency_key: key.into(),
    }
}

// -------------------------------------------------------------- scenarios

async fn bad_request_lists_every_rejected_field(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let id = open_session(&mut c, "ana", "bind-ana").await?;
    let mut request = submission(&id, "4242424242424241");
    let card = request.card.as_mut().expect("card");
    card.cvv = "12".into();
    card.expiry_year = 30;
    let shopper = request.shopper.as_mut().expect("shopper");
    shopper.phone = "555-1234".into();
    let err = c.submit_bind_info(request).await.expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        rejected_fields(&err),
        [
            "shopper.phone",
            "card.number",
            "card.expiry_year",
            "card.cvv"
        ],
        "every rejected field, each with what to fix"
    );
    // The reason and metadata "field" are the first field's.
    assert_eq!(reason(&err), "INVALID_PHONE");
    assert_eq!(
        metadata_of(&err).get("field").map(String::as_str),
        Some("shopper.phone")
    );
    assert!(!err.message().contains("4242424242"), "no card number");
    let after = session(&mut c, &id).await?;
    assert_eq!(after.status, pb::BindSessionStatus::Open as i32);
    assert_eq!(after.attempts_left, 3, "nothing used");
    assert!(stack.outbox().messages().is_empty(), "no code sent");

    // The binding requests list theirs too.
    let err = c
        .bind(pb::BindRequest {
            merchant_user_id: "not valid!".into(),
            presentation: 0,
            return_url: RETURN_URL.into(),
            prefill: None,
            idempotency_key: String::new(),
        })
        .await
        .expect_err("refused");
    assert_eq!(
        rejected_fields(&err),
        ["merchant_user_id", "presentation", "idempotency_key"]
    );
    Ok(())
}

async fn limit_exceeded_carries_the_documented_metadata(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let binding = bind_card(stack, &mut c, "ben").await?;
    let err = c
        .pay(pb::PayRequest {
            binding_token: binding.binding_token,
            merchant_user_id: "ben".into(),
            merchant_order_id: "o-1".into(),
            amount: cny(PER_PAYMENT_LIMIT + 1),
            description: String::new(),
            idempotency_key: "ben-1".into(),
        })
        .await
        .expect_err("over the limit");
    assert_eq!(reason(&err), "LIMIT_EXCEEDED");
    let keys: BTreeSet<String> = metadata_of(&err).into_keys().collect();
    assert_eq!(
        keys,
        BTreeSet::from(["per_payment_limit".into(), "remaining_today".into()])
    );
    // ...and the contract documents exactly these.
    let proto = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../proto/paybind/payment/v1/resources.proto"
    ))?;
    let start = proto.find("LIMIT_EXCEEDED").expect("documented");
    let comment = &proto[proto[..start].rfind("CARD_DECLINED").expect("before")..start];
    for key in &keys {
        assert!(
            comment.contains(&format!("\"{key}\"")),
            "LIMIT_EXCEEDED's comment names {key}"
        );
    }
    Ok(())
}

async fn idempotency_keys_take_any_characters_but_controls(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let key = "订单 42 / retry #1";
    let first = open_session(&mut c, "cai", key).await?;
    let again = open_session(&mut c, "cai", key).await?;
    assert_eq!(first, again, "the same key is the same request");
    let longest = "é".repeat(128);
    open_session(&mut c, "cai", &longest).await?;
    for bad in ["é".repeat(129), "a\nb".into(), String::new()] {
        let err = c
            .bind(bind_request("cai", &bad))
            .await
            .expect_err("refused");
        assert_eq!(reason(&err), "INVALID_ARGUMENT");
        assert_eq!(rejected_fields(&err), ["idempotency_key"]);
    }

    // The shop takes them as payment-svc does.
    let mut shop = stack.merchant_client(OPERATOR).await?;
    create_user(&mut shop, "cai").await?;
    let order = shop
        .checkout(checkout_request("cai", 0, key))
        .await?
        .into_inner()
        .order
        .expect("order");
    let replay = shop
        .checkout(checkout_request("cai", 0, key))
        .await?
        .into_inner()
        .order
        .expect("order");
    assert_eq!(order.order_id, replay.order_id);
    Ok(())
}

async fn names_with_bidirectional_controls_are_refused(stack: &Stack) -> R {
    let mut c = stack.client(SHOP_A).await?;
    let id = open_session(&mut c, "dai", "bind-dai").await?;
    let mut request = submission(&id, VISA);
    request.shopper.as_mut().expect("shopper").full_name =
        format!("Zhang{RIGHT_TO_LEFT_OVERRIDE}naS");
    let err = c.submit_bind_info(request).await.expect_err("refused");
    assert_eq!(rejected_fields(&err), ["shopper.full_name"]);

    let mut with_prefill = bind_request("dai", "bind-dai-2");
    with_prefill.prefill = Some(pb::ShopperPrefill {
        full_name: format!("\u{2066}Li Si{RIGHT_TO_LEFT_OVERRIDE}"),
        phone: String::new(),
    });
    let err = c.bind(with_prefill).await.expect_err("refused");
    assert_eq!(rejected_fields(&err), ["prefill.full_name"]);

    let mut shop = stack.merchant_client(OPERATOR).await?;
    let err = shop
        .create_user(mpb::CreateUserRequest {
            user_id: "dai".into(),
            display_name: format!("Zhang{RIGHT_TO_LEFT_OVERRIDE}naS"),
            phone: String::new(),
        })
        .await
        .expect_err("refused");
    assert_eq!(rejected_fields(&err), ["display_name"]);
    Ok(())
}

async fn the_shop_refuses_unknown_presentations_and_takes_unset_as_redirect(stack: &Stack) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    create_user(&mut shop, "eve").await?;
    for bad in [99, -1, 4] {
        let err = shop
            .start_binding(mpb::StartBindingRequest {
                user_id: "eve".into(),
                presentation: bad,
                return_url: String::new(),
            })
            .await
            .expect_err("unknown presentation");
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}");
        assert_eq!(rejected_fields(&err), ["presentation"], "{bad}");
        let err = shop
            .checkout(checkout_request("eve", bad, &format!("co-{bad}")))
            .await
            .expect_err("unknown presentation");
        assert_eq!(rejected_fields(&err), ["presentation"], "{bad}");
    }
    let orders = shop
        .list_orders(mpb::ListOrdersRequest {
            user_id: "eve".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(orders.orders.is_empty(), "no order was made");

    // Unset is a redirect, at payment-svc too.
    let started = shop
        .start_binding(mpb::StartBindingRequest {
            user_id: "eve".into(),
            presentation: 0,
            return_url: String::new(),
        })
        .await?
        .into_inner();
    let mut c = stack.client(SHOP_A).await?;
    assert_eq!(
        session(&mut c, &started.session_id).await?.presentation,
        pb::Presentation::Redirect as i32
    );
    Ok(())
}

async fn create_user_refuses_a_phone_it_could_never_prefill(stack: &Stack) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    for bad in ["555-1234", "+1 415 555 0100", "12345678901"] {
        let err = shop
            .create_user(mpb::CreateUserRequest {
                user_id: "fay".into(),
                display_name: "Fay".into(),
                phone: bad.into(),
            })
            .await
            .expect_err("not a mobile number");
        assert_eq!(reason(&err), "INVALID_PHONE", "{bad}");
        assert_eq!(rejected_fields(&err), ["phone"], "{bad}");
    }
    let err = shop
        .get_user(mpb::GetUserRequest {
            user_id: "fay".into(),
        })
        .await
        .expect_err("not created");
    assert_eq!(reason(&err), "USER_NOT_FOUND");

    // A valid number is kept as payment-svc will read it, and prefills.
    let user = shop
        .create_user(mpb::CreateUserRequest {
            user_id: "fay".into(),
            display_name: "Fay".into(),
            phone: "138 0013 8000".into(),
        })
        .await?
        .into_inner()
        .user
        .expect("user");
    assert_eq!(user.phone, PHONE);
    shop.start_binding(mpb::StartBindingRequest {
        user_id: "fay".into(),
        presentation: pb::Presentation::Popup as i32,
        return_url: String::new(),
    })
    .await?;
    Ok(())
}

async fn a_bind_and_pay_failed_by_its_last_code_cancels_the_order_at_once(stack: &Stack) -> R {
    let mut shop = stack.merchant_client(OPERATOR).await?;
    create_user(&mut shop, "gus").await?;
    let order = shop
        .checkout(checkout_request(
            "gus",
            pb::Presentation::Embedded as i32,
            "co-gus",
        ))
        .await?
        .into_inner()
        .order
        .expect("order");
    let order_status = |o: &mpb::Order| mpb::OrderStatus::try_from(o.status).expect("status");
    assert_eq!(order_status(&order), mpb::OrderStatus::AwaitingShopper);
    // Three cards declined at the charge: the session's three attempts.
    for attempt in 1..=3 {
        shop.submit_shopper_info(mpb::SubmitShopperInfoRequest {
            session_id: order.session_id.clone(),
            shopper: submission("", INSUFFICIENT_FUNDS).shopper,
            card: submission("", INSUFFICIENT_FUNDS).card,
        })
        .await?;
        let err = shop
            .verify_shopper_code(mpb::VerifyShopperCodeRequest {
                session_id: order.session_id.clone(),
                code: stack.last_code(PHONE)?,
            })
            .await
            .expect_err("declined");
        assert_eq!(reason(&err), "CARD_DECLINED", "attempt {attempt}");
        assert_eq!(
            metadata_of(&err).get("attempts_left").map(String::as_str),
            Some((3 - attempt).to_string().as_str())
        );
        let now = shop
            .get_order(mpb::GetOrderRequest {
                order_id: order.order_id.clone(),
            })
            .await?
            .into_inner()
            .order
            .expect("order");
        if attempt < 3 {
            assert_eq!(order_status(&now), mpb::OrderStatus::AwaitingShopper);
        } else {
            // No CompleteSession needed: the failed session cancelled it.
            assert_eq!(order_status(&now), mpb::OrderStatus::Cancelled);
            assert_eq!(now.decline_reason, "SESSION_FAILED");
        }
    }
    assert_eq!(stack.acquirer.approved_charges(), 0);
    Ok(())
}

async fn malformed_and_oversize_requests(stack: &Stack) -> R {
    let payment = channel_to(stack.addr, SHOP_A).await?;
    let merchant = channel_to(stack.merchant_addr()?, OPERATOR).await?;
    let bind = "/paybind.payment.v1.BindingService/Bind";
    let create_user = "/paybind.merchant.v1.MerchantService/CreateUser";
    // Field 1 with wire type 7 (there is none): not a protobuf message.
    let garbage = vec![0x0f, 0xff, 0xff, 0xff];
    for (channel, path) in [(payment.clone(), bind), (merchant.clone(), create_user)] {
        let err = raw_call(channel, path, garbage.clone())
            .await
            .expect_err("malformed");
        assert_eq!(err.code(), Code::InvalidArgument, "{path}");
        assert_eq!(reason(&err), "MALFORMED_REQUEST", "{path}");
    }
    // A well-formed message over the documented 64 KiB.
    let big = pb::BindRequest {
        return_url: "x".repeat(70_000),
        ..bind_request("hal", "k")
    }
    .encode_to_vec();
    let big_user = mpb::CreateUserRequest {
        user_id: "hal".into(),
        display_name: "x".repeat(70_000),
        phone: String::new(),
    }
    .encode_to_vec();
    for (channel, path, body) in [(payment, bind, big), (merchant, create_user, big_user)] {
        let err = raw_call(channel, path, body).await.expect_err("too large");
        assert_eq!(err.code(), Code::ResourceExhausted, "{path}");
        assert_eq!(reason(&err), "MESSAGE_TOO_LARGE", "{path}");
        assert_eq!(
            metadata_of(&err).get("limit_bytes").map(String::as_str),
            Some("65536")
        );
    }
    // Just under the limit is an ordinary request, refused for its fields.
    let fits = pb::BindRequest {
        return_url: "x".repeat(60_000),
        ..bind_request("hal", "k")
    }
    .encode_to_vec();
    let err = raw_call(channel_to(stack.addr, SHOP_A).await?, bind, fits)
        .await
        .expect_err("bad return url");
    assert_eq!(reason(&err), "RETURN_URL_NOT_ALLOWED");
    Ok(())
}
