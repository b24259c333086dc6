//! Secrets stay secret: after a full bind-and-pay story with its errors
//! (over the API, and on the binding page in a browser), no card number,
//! ID number, code or token is in the logs (captured at debug
//! level, every crate), in any error message, or in clear in the database
//! files — payment-svc's, and merchant-svc's, which keeps its users' tokens
//! sealed.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use paybind_tests::{
    fixtures::shop_user_with_card, pb, Backend, Stack, OPERATOR, RETURN_URL, SHOP_A,
};

const PAN: &str = "5555555555554444";
/// The card the shop binds for its user (through merchant-svc).
const SHOP_PAN: &str = "4242424242424242";
const ID_NUMBER: &str = "11010519491231002X";
const PHONE: &str = "+8613800138000";
/// The card a shopper types on the binding page.
const PAGE_PAN: &str = "6200000000000005";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_errors_or_the_database_in_clear() -> anyhow::Result<()> {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .without_time()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let stack = Stack::start_with_merchant(Backend::Sqlite)
        .await?
        .expect("sqlite always runs");
    let mut c = stack.client(SHOP_A).await?;
    let mut errors = Vec::new();
    let session = c
        .bind_and_pay(pb::BindAndPayRequest {
            merchant_user_id: "sam".into(),
            presentation: pb::Presentation::Embedded as i32,
            return_url: RETURN_URL.into(),
            prefill: None,
            payment: Some(pb::PaymentDetails {
                merchant_order_id: "o-1".into(),
                amount: Some(pb::Money {
                    amount_minor: 1234,
                    currency: "CNY".into(),
                }),
                description: "socks".into(),
            }),
            idempotency_key: "secrets-1".into(),
        })
        .await?
        .into_inner()
        .session
        .expect("session");
    let submit = |number: &str, id: &str| pb::SubmitBindInfoRequest {
        session_id: session.session_id.clone(),
        shopper: Some(pb::ShopperInfo {
            full_name: "Zhang San".into(),
            id_number: id.into(),
            phone: PHONE.into(),
        }),
        card: Some(pb::CardInfo {
            number: number.into(),
            expiry_month: 1,
            expiry_year: 2032,
            cvv: "987".into(),
        }),
    };
    // Errors that are about the secrets themselves.
    errors.push(
        c.submit_bind_info(submit("5555555555554445", ID_NUMBER))
            .await
            .expect_err("luhn"),
    );
    errors.push(
        c.submit_bind_info(submit(PAN, "110105194912310021"))
            .await
            .expect_err("id"),
    );
    c.submit_bind_info(submit(PAN, ID_NUMBER)).await?;
    let code = stack.last_code(PHONE)?;
    errors.push(
        c.verify_bind(pb::VerifyBindRequest {
            session_id: session.session_id.clone(),
            code: "000001".into(),
        })
        .await
        .expect_err("wrong code"),
    );
    let done = c
        .verify_bind(pb::VerifyBindRequest {
            session_id: session.session_id.clone(),
            code: code.clone(),
        })
        .await?
        .into_inner()
        .session
        .expect("session");
    let token = done.binding.expect("binding").binding_token;
    c.pay(pb::PayRequest {
        binding_token: token.clone(),
        merchant_user_id: "sam".into(),
        merchant_order_id: "o-2".into(),
        amount: Some(pb::Money {
            amount_minor: 100,
            currency: "CNY".into(),
        }),
        description: String::new(),
        idempotency_key: "secrets-2".into(),
    })
    .await?;
    errors.push(
        c.pay(pb::PayRequest {
            binding_token: token.clone(),
            merchant_user_id: "someone-else".into(),
            merchant_order_id: "o-3".into(),
            amount: Some(pb::Money {
                amount_minor: 100,
                currency: "CNY".into(),
            }),
            description: String::new(),
            idempotency_key: "secrets-3".into(),
        })
        .await
        .expect_err("wrong user"),
    );
    // The shop binds a card for its user and keeps the token.
    let mut shop = stack.merchant_client(OPERATOR).await?;
    shop_user_with_card(&stack, &mut shop, "tess", SHOP_PAN).await?;
    let shop_code = stack.last_code(PHONE)?;
    let shop_token = c
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: "tess".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .bindings
        .remove(0)
        .binding_token;
    // A shopper on the binding page, in a real browser (where one is
    // installed): a field to fix, a wrong code, then the right one.
    let mut page_secrets = Vec::new();
    if let Some(b) =
        paybind_tests::browser::Browser::open("secrets-page", paybind_tests::browser::DESKTOP)
            .await?
    {
        let session = c
            .bind(pb::BindRequest {
                merchant_user_id: "pia".into(),
                presentation: pb::Presentation::Redirect as i32,
                return_url: RETURN_URL.into(),
                prefill: None,
                idempotency_key: "secrets-page".into(),
            })
            .await?
            .into_inner()
            .session
            .expect("session");
        b.goto(&session.binding_page_url).await?;
        b.fill_details_as_zhang_san(PAGE_PAN).await?;
        b.fill("#id_number", "110105194912310021").await?;
        b.submit("#submit-details").await?;
        b.wait_for("#id_number-error").await?;
        let error_page = b.client.source().await?;
        for typed in [PAGE_PAN, "6200 0000", "110105194912310021"] {
            assert!(
                !error_page.contains(typed),
                "the page said back what was typed"
            );
        }
        b.fill_details_as_zhang_san(PAGE_PAN).await?;
        b.submit("#submit-details").await?;
        b.wait_for("#code").await?;
        let page_code = stack.last_code(PHONE)?;
        b.fill(
            "#code",
            if page_code == "000002" {
                "000003"
            } else {
                "000002"
            },
        )
        .await?;
        b.submit("#submit-code").await?;
        b.wait_for("#notice").await?;
        b.fill("#code", &page_code).await?;
        b.submit("#submit-code").await?;
        b.wait_for("#card-summary").await?;
        let result_page = b.client.source().await?;
        assert!(!result_page.contains(PAGE_PAN) && !result_page.contains(&page_code));
        page_secrets.push(page_code);
        b.close().await?;
    }
    // Read the databases (and their write-ahead logs) as they are on disk.
    let on_disk = |file: &str| {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            if let Ok(b) = std::fs::read(format!("{file}{suffix}")) {
                bytes.extend(b);
            }
        }
        bytes
    };
    let db_file = stack.db_file.clone().expect("sqlite file");
    let stored = on_disk(&db_file.display().to_string());
    let shop_url = stack.merchant_db_url()?;
    let shop_stored = on_disk(shop_url.trim_start_matches("sqlite:"));
    stack.stop().await?;

    let mut secrets = vec![
        PAN,
        "5555 5555",
        SHOP_PAN,
        PAGE_PAN,
        "6200 0000",
        ID_NUMBER,
        &code,
        &shop_code,
        &token,
        &shop_token,
    ];
    secrets.extend(page_secrets.iter().map(String::as_str));
    let log_text = String::from_utf8(logs.0.lock().unwrap_or_else(|p| p.into_inner()).clone())?;
    assert!(
        log_text.contains("binding created") || log_text.contains("bound and paid"),
        "logs were captured"
    );
    for secret in secrets {
        assert!(!log_text.contains(secret), "a secret reached the logs");
        for e in &errors {
            assert!(
                !e.message().contains(secret),
                "a secret reached an error: {}",
                e.message()
            );
            assert!(!format!("{:?}", e.metadata()).contains(secret));
        }
    }

    assert!(stored.len() > 4096, "the database was read");
    assert!(shop_stored.len() > 4096, "the shop's database was read");
    let has =
        |bytes: &[u8], secret: &str| bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
    for secret in [PAN, PAGE_PAN, ID_NUMBER, &token, &shop_token] {
        assert!(!has(&stored, secret), "a secret is stored in clear");
    }
    assert!(!shop_token.is_empty());
    for secret in [&shop_token, "pbt_"] {
        assert!(
            !has(&shop_stored, secret),
            "the shop keeps a token in clear"
        );
    }
    Ok(())
}
