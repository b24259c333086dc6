//! The storefront end to end, in process: a browser that keeps its cookie
//! and posts the forms as the pages render them, against the real router,
//! shop and SQLite store, with payment-svc faked (`domain::fake`).
use std::sync::Arc;

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
    Router,
};
use paybind_shared::{ids::SessionId, model::SessionStatus};
use tower::ServiceExt;

use super::router;
use crate::{config::WebSettings, domain::fake};

const ORIGIN: &str = "http://localhost:8080";

struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The value of the first `name="…" value="…"` input after `after`.
    fn input_after(&self, after: &str, name: &str) -> String {
        let start = self
            .body
            .find(after)
            .unwrap_or_else(|| panic!("{after:?} not on the page:\n{}", self.body));
        let rest = &self.body[start..];
        let marker = format!("name=\"{name}\" value=\"");
        let at = rest
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} after {after:?}"))
            + marker.len();
        rest[at..].split('"').next().unwrap_or_default().to_owned()
    }

    fn csrf(&self) -> String {
        self.input_after("<body", "csrf")
    }
}

struct Browser {
    app: Router,
    cookie: Option<String>,
}

impl Browser {
    fn new(app: &Router) -> Self {
        Self {
            app: app.clone(),
            cookie: None,
        }
    }

    async fn send(&mut self, request: Request<Body>) -> Page {
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        if let Some(set) = response.headers().get(header::SET_COOKIE) {
            let set = set.to_str().expect("ascii");
            self.cookie = set.split(';').next().map(str::to_owned);
        }
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        Page {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).expect("utf-8"),
        }
    }

    fn request(&self, method: &str, path: &str) -> axum::http::request::Builder {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(cookie) = &self.cookie {
            builder = builder.header(header::COOKIE, cookie);
        }
        builder
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self
            .request("GET", path)
            .body(Body::empty())
            .expect("request");
        self.send(request).await
    }

    async fn post_from(&mut self, origin: &str, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded::to_string(fields).expect("form");
        let request = self
            .request("POST", path)
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request");
        self.send(request).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.post_from(ORIGIN, path, fields).await
    }

    /// Signs up `name` from the sign-up page, as a browser would.
    async fn sign_up(&mut self, name: &str) {
        let form = self.get("/signup").await;
        let csrf = form.csrf();
        let done = self
            .post(
                "/signup",
                &[
                    ("csrf", &csrf),
                    ("username", name),
                    ("password", "correct horse"),
                ],
            )
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    }

    /// Presses the buy button of `item` on the home page.
    async fn buy(&mut self, item: &str) -> Page {
        let home = self.get("/").await;
        assert!(
            home.body.contains(&format!("data-item=\"{item}\"")),
            "{}",
            home.body
        );
        let key = home.input_after(&format!("value=\"{item}\""), "key");
        self.post(
            "/buy",
            &[("csrf", &home.csrf()), ("item", item), ("key", &key)],
        )
        .await
    }
}

async fn storefront() -> (Router, Arc<fake::FakePayments>, tempfile::TempDir) {
    let (shop, payments, dir) = fake::shop().await;
    let app = router(shop, &WebSettings::default(), 8080).expect("router");
    (app, payments, dir)
}

/// Owned form fields as `post` takes them.
fn pairs<'a>(fields: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    fields.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn session_of(page_url: &str) -> SessionId {
    let id = page_url.rsplit('/').next().expect("id");
    SessionId::parse(id).expect("session id")
}

#[tokio::test]
async fn every_page_carries_the_security_headers() {
    let (app, _, _dir) = storefront().await;
    let mut browser = Browser::new(&app);
    let home = browser.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    let csp = home.header(header::CONTENT_SECURITY_POLICY);
    for part in [
        "default-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "frame-src 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert_eq!(home.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(home.header(header::REFERRER_POLICY), "same-origin");
    assert_eq!(home.header(header::CACHE_CONTROL), "no-store");
    // The session cookie: HttpOnly, Lax, whole site; not Secure on
    // http://localhost.
    let cookie = home.header(header::SET_COOKIE);
    for part in ["shop_session=", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");

    let script = browser.get("/static/shop.js").await;
    assert_eq!(
        script.header(header::CONTENT_TYPE),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(script.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert!(script.body.contains("event.origin !== paymentOrigin"));
    let missing = browser.get("/nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("id=\"flash\""));
}

#[tokio::test]
async fn an_https_storefront_has_a_host_only_secure_cookie() {
    let (shop, _, _dir) = fake::shop().await;
    let settings = WebSettings {
        public_url: Some("https://shop.example".into()),
        ..WebSettings::default()
    };
    let app = router(shop, &settings, 8080).expect("router");
    let page = Browser::new(&app).get("/").await;
    let cookie = page.header(header::SET_COOKIE);
    assert!(cookie.starts_with("__Host-shop_session="), "{cookie}");
    assert!(cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn forms_need_the_session_token_and_the_shop_origin() {
    let (app, _, _dir) = storefront().await;
    let mut browser = Browser::new(&app);
    let form = browser.get("/signup").await;
    assert!(form.body.contains("id=\"signup-form\""));
    let csrf = form.csrf();
    let fields = |csrf: &str| {
        [
            ("csrf", csrf),
            ("username", "carol"),
            ("password", "correct horse"),
        ]
        .map(|(k, v)| (k, v.to_owned()))
    };
    let refused = browser.post("/signup", &pairs(&fields(""))).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("id=\"flash\""));
    let wrong = browser
        .post("/signup", &pairs(&fields(&"0".repeat(64))))
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let elsewhere = browser
        .post_from("https://evil.example", "/signup", &pairs(&fields(&csrf)))
        .await;
    assert_eq!(elsewhere.status, StatusCode::FORBIDDEN);
    // Under `no-referrer` browsers would send this on the shop's own
    // posts: the policy is `same-origin` so that they never do.
    let null = browser
        .post_from("null", "/signup", &pairs(&fields(&csrf)))
        .await;
    assert_eq!(null.status, StatusCode::FORBIDDEN);
    let ok = browser.post("/signup", &pairs(&fields(&csrf))).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    // Signing up started a new session: the old token is no longer good.
    let stale = browser.post("/signout", &[("csrf", &csrf)]).await;
    assert_eq!(stale.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn sign_up_explains_each_field_and_sign_in_says_nothing_of_which_was_wrong() {
    let (app, _, _dir) = storefront().await;
    let mut browser = Browser::new(&app);
    let form = browser.get("/signup").await;
    let bad = browser
        .post(
            "/signup",
            &[
                ("csrf", &form.csrf()),
                ("username", "no spaces"),
                ("password", "short"),
                ("phone", "12"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("id=\"username-error\""), "{}", bad.body);
    assert!(bad.body.contains("id=\"password-error\""));
    assert!(bad.body.contains("id=\"phone-error\""));
    // What was typed is kept, the password never.
    assert!(bad.body.contains("value=\"no spaces\""));
    assert!(!bad.body.contains("value=\"short\""));

    browser.sign_up("dave").await;
    let mut other = Browser::new(&app);
    let taken = other.get("/signup").await;
    let again = other
        .post(
            "/signup",
            &[
                ("csrf", &taken.csrf()),
                ("username", "dave"),
                ("password", "another one"),
            ],
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.body.contains("taken"));

    let form = other.get("/signin").await;
    assert!(form.body.contains("id=\"signin-form\""));
    for (name, password) in [
        ("dave", "wrong password"),
        ("nobody", "correct horse"),
        ("dave", "x"),
    ] {
        let refused = other
            .post(
                "/signin",
                &[
                    ("csrf", &form.csrf()),
                    ("username", name),
                    ("password", password),
                ],
            )
            .await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert!(
            refused.body.contains("Wrong username or password."),
            "{}",
            refused.body
        );
    }
    let ok = other
        .post(
            "/signin",
            &[
                ("csrf", &form.csrf()),
                ("username", "dave"),
                ("password", "correct horse"),
                ("next", "/account"),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.location(), "/account");
    // Another site is never where signing in leads.
    let account = other.get("/account").await;
    assert!(account.body.contains("Signed in as"));
}

#[tokio::test]
async fn a_signed_out_visitor_is_sent_to_sign_in_and_back() {
    let (app, _, _dir) = storefront().await;
    let mut browser = Browser::new(&app);
    let page = browser.get("/account").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/signin?next=%2Faccount");
    let form = browser.get("/signin?next=https://evil.example").await;
    assert!(
        form.body.contains("name=\"next\" value=\"\""),
        "{}",
        form.body
    );
}

#[tokio::test]
async fn buying_without_a_card_binds_it_and_then_it_pays_at_once() {
    let (app, payments, _dir) = storefront().await;
    let mut browser = Browser::new(&app);
    browser.sign_up("bob").await;

    // No card on file, redirect (the default): straight to the page.
    let sent = browser.buy("longjing").await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    assert!(
        sent.location().starts_with(fake::PAGE_ORIGIN),
        "{}",
        sent.location()
    );
    let session = session_of(sent.location());

    // The page returns to /bound: the shop asks payment-svc and shows the order.
    payments.complete(&session);
    let back = browser.get(&format!("/bound?session_id={session}")).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER);
    assert!(
        back.location().starts_with("/orders/ord_"),
        "{}",
        back.location()
    );
    let order = browser.get(back.location()).await;
    assert!(
        order
            .body
            .contains("id=\"order-status\" class=\"status paid\">Paid<"),
        "{}",
        order.body
    );
    assert!(order.body.contains("id=\"paid-with-new-card\""));
    assert!(!order.body.contains("id=\"paid-with-card-on-file\""));

    let account = browser.get("/account").await;
    assert!(
        account.body.contains("id=\"card-on-file\""),
        "{}",
        account.body
    );
    assert!(account.body.contains("Visa •••• 4242, expires 12/2030"));
    assert!(account
        .body
        .contains("<dt>Per payment</dt><dd>500.00 CNY</dd>"));
    assert!(account.body.contains("id=\"remove-card\""));

    // With the card on file: paid at once, no page.
    let paid = browser.buy("tieguanyin").await;
    assert_eq!(paid.status, StatusCode::SEE_OTHER);
    assert!(paid.location().starts_with("/orders/ord_"));
    let order = browser.get(paid.location()).await;
    assert!(order.body.contains(">Paid<"));
    assert!(order.body.contains("id=\"paid-with-card-on-file\""));

    // Above the auth-free limit: declined, with what to do about it.
    let declined = browser.buy("yixing-teapot").await;
    let order = browser.get(declined.location()).await;
    assert!(order.body.contains(">Declined<"), "{}", order.body);
    assert!(order
        .body
        .contains("above what your card on file may pay without authentication"));
}

#[tokio::test]
async fn the_same_form_sent_twice_is_one_order_and_one_refund() {
    let (app, payments, _dir) = storefront().await;
    let mut browser = Browser::new(&app);
    browser.sign_up("erin").await;
    let session = session_of(browser.buy("longjing").await.location());
    payments.complete(&session);
    browser.get(&format!("/bound?session_id={session}")).await;

    let home = browser.get("/").await;
    let key = home.input_after("value=\"jasmine-sampler\"", "key");
    let fields = [
        ("csrf", home.csrf()),
        ("item", "jasmine-sampler".into()),
        ("key", key),
    ];
    let first = browser.post("/buy", &pairs(&fields)).await;
    let second = browser.post("/buy", &pairs(&fields)).await;
    assert_eq!(first.location(), second.location());

    let order = browser.get(first.location()).await;
    assert!(order.body.contains("class=\"refund-button"));
    let key = order.input_after("class=\"refund-form\"", "key");
    let amount = order.input_after("class=\"refund-form\"", "amount_minor");
    assert_eq!(amount, "1999");
    let action = format!("{}/refund", first.location());
    let refund = [
        ("csrf", order.csrf()),
        ("key", key),
        ("amount_minor", amount),
    ];
    for _ in 0..2 {
        let done = browser.post(&action, &pairs(&refund)).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        let order = browser.get(done.location()).await;
        assert!(
            order.body.contains("id=\"order-refunded\">19.99 CNY<"),
            "{}",
            order.body
        );
        assert!(!order.body.contains("refund-button"));
    }
    let account = browser.get("/account").await;
    assert_eq!(account.body.matches("Jasmine tea sampler").count(), 1);
}

#[tokio::test]
async fn embedded_and_popup_pages_are_shown_inside_the_shop() {
    let (app, payments, _dir) = storefront().await;
    let mut browser = Browser::new(&app);
    browser.sign_up("frank").await;
    let account = browser.get("/account").await;
    assert!(account.body.contains("id=\"presentation-form\""));
    let saved = browser
        .post(
            "/account/presentation",
            &[("csrf", &account.csrf()), ("presentation", "embedded")],
        )
        .await;
    assert_eq!(saved.location(), "/account?notice=presentation-saved");
    let account = browser.get(saved.location()).await;
    assert!(
        account.body.contains("value=\"embedded\" checked"),
        "{}",
        account.body
    );

    let sent = browser.buy("puer-cake").await;
    assert!(
        sent.location().starts_with("/orders/"),
        "{}",
        sent.location()
    );
    let order = browser.get(sent.location()).await;
    assert!(
        order.body.contains("id=\"payment-frame\""),
        "{}",
        order.body
    );
    assert!(order
        .body
        .contains("<script src=\"/static/shop.js\" defer></script>"));
    assert!(order
        .body
        .contains(&format!("data-payment-origin=\"{}\"", fake::PAGE_ORIGIN)));
    let csp = order.header(header::CONTENT_SECURITY_POLICY);
    assert!(
        csp.contains(&format!("frame-src {};", fake::PAGE_ORIGIN)),
        "{csp}"
    );
    assert!(order.body.contains(">Awaiting payment<"));

    // The page finished and the script went to the done URL.
    let done = order
        .body
        .split("data-done-url=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("done url");
    let session = SessionId::parse(done.trim_start_matches("/bound?session_id=")).expect("session");
    payments.complete(&session);
    let back = browser.get(done).await;
    assert_eq!(back.location(), sent.location());

    // Binding a card from the account, in a popup.
    let mut other = Browser::new(&app);
    other.sign_up("grace").await;
    let account = other.get("/account").await;
    assert!(account.body.contains("id=\"bind-card\""));
    let started = other
        .post(
            "/account/bind",
            &[("csrf", &account.csrf()), ("presentation", "popup")],
        )
        .await;
    assert!(
        started.location().starts_with("/bind/bs_"),
        "{}",
        started.location()
    );
    assert!(started.location().ends_with("?presentation=popup"));
    let page = other.get(started.location()).await;
    assert!(page.body.contains("id=\"open-popup\""), "{}", page.body);
    assert!(page
        .header(header::CONTENT_SECURITY_POLICY)
        .contains("frame-src 'none'"));
    let session = SessionId::parse(
        started
            .location()
            .trim_start_matches("/bind/")
            .split('?')
            .next()
            .expect("id"),
    )
    .expect("session");
    // Nobody else can open it.
    let stolen = browser.get(started.location()).await;
    assert_eq!(stolen.status, StatusCode::NOT_FOUND);
    payments.complete(&session);
    let back = other.get(&format!("/bound?session_id={session}")).await;
    assert_eq!(back.location(), "/account?notice=card-bound");
    let account = other.get(back.location()).await;
    assert!(account.body.contains("id=\"card-on-file\""));
    assert!(account.body.contains("id=\"flash\""));
}

#[tokio::test]
async fn a_shopper_sees_only_their_own_orders() {
    let (app, payments, _dir) = storefront().await;
    let mut alice = Browser::new(&app);
    alice.sign_up("alice").await;
    let sent = alice.buy("longjing").await;
    let session = session_of(sent.location());
    payments.end(&session, SessionStatus::Expired);
    let back = alice.get(&format!("/bound?session_id={session}")).await;
    let order_page = back.location().to_owned();
    let order = alice.get(&order_page).await;
    assert!(order.body.contains(">Cancelled<"), "{}", order.body);
    assert!(order.body.contains("expired"));

    let mut mallory = Browser::new(&app);
    mallory.sign_up("mallory").await;
    assert_eq!(mallory.get(&order_page).await.status, StatusCode::NOT_FOUND);
    // The way back applies the outcome for anyone, and shows it to no one else.
    let theirs = mallory.get(&format!("/bound?session_id={session}")).await;
    assert_eq!(theirs.status, StatusCode::OK);
    assert!(!theirs.body.contains("Cancelled"));
}
