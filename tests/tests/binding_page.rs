//! The binding page in a real browser, for a merchant that calls the API
//! itself (no storefront): the page drives the same session as direct
//! entry, its forms refuse what did not come from it, it cannot be framed
//! by an unregistered origin, and no secret reaches a URL.
use paybind_tests::{
    browser::{Browser, DESKTOP},
    fixtures::{read_session, Client, ID_NUMBER, PHONE, VISA},
    on_both_backends, pb, Stack, RETURN_URL, SHOP_NO_DIRECT,
};

/// Opens a session as a merchant without direct entry; its id and page URL.
async fn open(
    c: &mut Client,
    presentation: pb::Presentation,
    key: &str,
) -> anyhow::Result<(String, String)> {
    let session = c
        .bind(pb::BindRequest {
            merchant_user_id: "carol".into(),
            presentation: presentation as i32,
            return_url: RETURN_URL.into(),
            prefill: Some(pb::ShopperPrefill {
                full_name: "Zhang San".into(),
                phone: "13800138000".into(),
            }),
            idempotency_key: key.into(),
        })
        .await?
        .into_inner()
        .session
        .ok_or_else(|| anyhow::anyhow!("no session"))?;
    Ok((session.session_id, session.binding_page_url))
}

fn no_secret_in(urls: &[String], secrets: &[&str]) -> anyhow::Result<()> {
    for url in urls {
        let squashed = url.replace(['+', ' ', '%'], "");
        for secret in secrets {
            anyhow::ensure!(
                !squashed.contains(secret),
                "a secret in a URL the browser visited: {url}"
            );
        }
    }
    Ok(())
}

async fn the_page_binds_a_card_and_sends_the_shopper_back(stack: &Stack) -> anyhow::Result<()> {
    let Some(b) = Browser::open("page-redirect-bind", DESKTOP).await? else {
        return Ok(());
    };
    let mut c = stack.client(SHOP_NO_DIRECT).await?;
    let (id, url) = open(&mut c, pb::Presentation::Redirect, "page-bind-1").await?;
    assert!(url.starts_with(&stack.pages()), "{url}");
    b.goto(&url).await?;
    assert!(
        b.text(".who").await?.contains("Test shop-no-direct"),
        "who is asking"
    );
    assert_eq!(
        b.wait_for("#full_name")
            .await?
            .prop("value")
            .await?
            .as_deref(),
        Some("Zhang San"),
        "prefilled"
    );
    b.shot("details").await?;

    // A field to fix: said at the field, and nothing sent to the issuer.
    b.fill_details_as_zhang_san("4242 4242 4242 4241").await?;
    b.submit("#submit-details").await?;
    let error = b.text("#card_number-error").await?;
    assert!(error.to_lowercase().contains("card number"), "{error}");
    let field = b.wait_for("#card_number").await?;
    assert_eq!(field.attr("aria-invalid").await?.as_deref(), Some("true"));
    assert_eq!(
        field.attr("aria-describedby").await?.as_deref(),
        Some("card_number-error")
    );
    b.shot("field-error").await?;
    assert_eq!(
        read_session(&mut c, &id).await?.attempts_left,
        3,
        "a typo uses no attempt"
    );

    b.fill_details_as_zhang_san("4242 4242 4242 4242").await?;
    b.submit("#submit-details").await?;
    let masked = b.text("#masked-phone").await?;
    assert!(
        masked.contains("****") && !masked.contains("13800138000"),
        "{masked}"
    );
    b.shot("code").await?;
    // A reload shows the code step again; it sends nothing twice.
    b.client.refresh().await?;
    b.wait_for("#code").await?;
    assert_eq!(stack.outbox().messages().len(), 1, "one code sent");

    let code = stack
        .outbox()
        .last_code_to(PHONE)
        .ok_or_else(|| anyhow::anyhow!("no code"))?;
    // A wrong code first: said on the code step, with the tries left.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    b.fill("#code", wrong).await?;
    b.submit("#submit-code").await?;
    let notice = b.text("#notice").await?;
    assert!(
        notice.contains("not right") && notice.contains('4'),
        "{notice}"
    );
    assert_eq!(
        b.wait_for("#code")
            .await?
            .attr("aria-invalid")
            .await?
            .as_deref(),
        Some("true")
    );
    b.fill("#code", &code).await?;
    b.submit("#submit-code").await?;
    let card = b.text("#card-summary").await?;
    assert!(card.contains("4242"), "{card}");
    // Back: the page as it is now (every form was answered with a
    // redirect, so the history holds no form to send again).
    b.client.back().await?;
    assert!(
        b.text("#card-summary").await?.contains("4242"),
        "the result again"
    );
    b.client.forward().await?;
    b.shot("bound").await?;
    let session = read_session(&mut c, &id).await?;
    assert_eq!(session.status, pb::BindSessionStatus::Completed as i32);
    assert!(session.binding.is_some(), "the merchant sees the binding");

    // Back to the merchant: a 303 to the return URL with the session id only.
    b.submit("#back-to-merchant").await?;
    b.until("the browser is at the return URL", || async {
        Ok(b.current_url().await?.starts_with(RETURN_URL))
    })
    .await?;
    let back = url::Url::parse(&b.current_url().await?)?;
    let pairs: Vec<(String, String)> = back.query_pairs().into_owned().collect();
    assert_eq!(pairs, vec![("session_id".to_owned(), id.clone())]);
    b.close().await?;
    Ok(())
}

async fn forms_without_their_token_or_from_elsewhere_are_refused(
    stack: &Stack,
) -> anyhow::Result<()> {
    let Some(b) = Browser::open("page-csrf", DESKTOP).await? else {
        return Ok(());
    };
    let mut c = stack.client(SHOP_NO_DIRECT).await?;
    let (id, url) = open(&mut c, pb::Presentation::Redirect, "page-csrf-1").await?;
    b.goto(&url).await?;
    b.fill_details_as_zhang_san(VISA).await?;
    // The form, posted without its token.
    b.client
        .execute(
            "document.querySelector('input[name=csrf]').remove();",
            vec![],
        )
        .await?;
    b.submit("#submit-details").await?;
    let title = b.text("#closed-title").await?;
    assert!(title.contains("can no longer be sent"), "{title}");
    b.shot("refused-without-token").await?;
    let session = read_session(&mut c, &id).await?;
    assert_eq!(
        session.status,
        pb::BindSessionStatus::Open as i32,
        "nothing submitted"
    );
    assert!(stack.outbox().messages().is_empty(), "no code sent");

    // The same form, with a token, posted from a page of another origin.
    let foreign = foreign_site(&format!(
        r#"<form method="post" action="{url}/details"><input name="csrf" value="00"><input name="card_number" value="{VISA}"><button id="go">go</button></form>"#
    ))
    .await?;
    b.goto(&foreign).await?;
    b.submit("#go").await?;
    b.wait_for("#closed-title").await?;
    assert_eq!(
        read_session(&mut c, &id).await?.status,
        pb::BindSessionStatus::Open as i32
    );
    no_secret_in(&b.visited_urls().await?, &[VISA, ID_NUMBER])?;
    b.close().await?;
    Ok(())
}

async fn only_registered_origins_may_frame_the_page(stack: &Stack) -> anyhow::Result<()> {
    let Some(b) = Browser::open("page-framing", DESKTOP).await? else {
        return Ok(());
    };
    let mut c = stack.client(SHOP_NO_DIRECT).await?;
    // Registered origin: https://shop.example; this page is elsewhere.
    let (_, url) = open(&mut c, pb::Presentation::Embedded, "page-frame-1").await?;
    let foreign = foreign_site(&format!(
        r#"<h1 id="host">host</h1><iframe id="f" src="{url}" width="400" height="600"></iframe>"#
    ))
    .await?;
    b.goto(&foreign).await?;
    b.wait_for("#host").await?;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    b.shot("framed-by-a-stranger").await?;
    b.client.enter_frame(0).await?;
    assert!(
        !b.exists("#details-form").await?,
        "the browser refused to show the page in the frame"
    );
    b.client.enter_parent_frame().await?;
    // A redirect-presentation page may not be framed by anyone at all.
    let (_, url) = open(&mut c, pb::Presentation::Redirect, "page-frame-2").await?;
    let foreign = foreign_site(&format!(r#"<iframe id="f" src="{url}"></iframe>"#)).await?;
    b.goto(&foreign).await?;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    b.client.enter_frame(0).await?;
    assert!(!b.exists("#details-form").await?);
    b.close().await?;
    Ok(())
}

async fn expired_and_unknown_sessions_have_pages_of_their_own(stack: &Stack) -> anyhow::Result<()> {
    let Some(b) = Browser::open("page-closed", DESKTOP).await? else {
        return Ok(());
    };
    let mut c = stack.client(SHOP_NO_DIRECT).await?;
    let (id, url) = open(&mut c, pb::Presentation::Popup, "page-expired-1").await?;
    paybind_tests::execute_sql(
        &stack.payment_db_url(),
        &format!("UPDATE bind_sessions SET expires_ms = 1 WHERE id = '{id}'"),
    )
    .await?;
    b.goto(&url).await?;
    assert!(b.text("#closed-title").await?.contains("expired"));
    b.shot("expired").await?;
    b.goto(&format!(
        "{}/bind/bs_00000000000000000000000000000000",
        stack.pages()
    ))
    .await?;
    assert!(b.text("#closed-title").await?.contains("not found"));
    b.goto(&format!("{}/bind/nonsense", stack.pages())).await?;
    assert!(b.text("#closed-title").await?.contains("not found"));
    // Chinese, by the switch.
    b.goto(&format!("{url}?lang=zh")).await?;
    assert!(b.text("#closed-title").await?.contains("过期"));
    b.close().await?;
    Ok(())
}

/// Serves one HTML page from another origin (a stranger's site); its URL.
async fn foreign_site(body: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let page = format!("<!doctype html><html><body>{body}</body></html>");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let page = page.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = socket.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(format!("http://localhost:{}/", addr.port()))
}

on_both_backends!(with_merchant = false;
    the_page_binds_a_card_and_sends_the_shopper_back,
    forms_without_their_token_or_from_elsewhere_are_refused,
    only_registered_origins_may_frame_the_page,
    expired_and_unknown_sessions_have_pages_of_their_own,
);
