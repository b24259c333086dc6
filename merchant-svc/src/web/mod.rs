//! The storefront: the shop's HTML pages for shoppers, over HTTP, beside the
//! gRPC API in the same process. Shoppers sign up and in, buy from a small
//! catalogue (paid at once with the card on file, or through the payment
//! institution's binding page), keep a card on file, see and refund their
//! orders.
//!
//! Handlers parse forms into the domain's types and call [`Shop`]; they
//! never speak gRPC or SQL, and no card data ever reaches them: cards are
//! typed only on payment-svc's page. Every page is an askama template
//! (`templates/`); the one script and the stylesheet are served from here
//! (`static/`), so the Content-Security-Policy allows nothing but this
//! origin (and the payment origin's frame where a page embeds it).
use std::sync::Arc;

use axum::{
    extract::{DefaultBodyLimit, Request},
    http::{header, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};

use crate::{config::WebSettings, domain::Shop};

mod account;
mod auth;
pub mod catalogue;
mod orders;
mod page;
mod pay;
mod session;
mod shop;

/// Form posts are a few short fields: anything larger is refused before
/// it is read.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// Every page's policy: scripts, styles, images and frames from this
/// origin only (none of the latter two are used), no plugins, no `<base>`,
/// and never framed by anyone. A page that embeds the payment page widens
/// `frame-src` to the payment origin alone (`pay::PaymentBox::csp`).
/// `form-action` is left out on purpose: a form that buys or binds is
/// answered with a redirect to the payment origin, which Chrome checks
/// against `form-action`.
pub(crate) const BASE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; frame-src 'none'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// What every handler shares.
#[derive(Clone)]
pub struct Web(Arc<Inner>);

struct Inner {
    shop: Arc<Shop>,
    /// This storefront's origin, as browsers send it in `Origin`.
    origin: String,
    /// Where payment-svc's binding page sends the shopper back.
    return_url: String,
    cookies: session::Cookies,
}

impl Web {
    fn shop(&self) -> &Shop {
        &self.0.shop
    }
}

/// The storefront's routes, listening on `port` (which gives the default
/// public URL).
pub fn router(shop: Arc<Shop>, settings: &WebSettings, port: u16) -> anyhow::Result<Router> {
    let public = settings.public_origin(port)?;
    let origin = public.origin().ascii_serialization();
    let key = match settings.cookie_key_bytes()? {
        Some(bytes) => bytes,
        None => {
            tracing::warn!(
                "web.cookie_key is not set: a random key for this run, so sign-ins do not survive a restart"
            );
            session::random_key()
        }
    };
    // Browsers keep `Secure` cookies from plain-http pages only on a
    // machine's own address; anywhere else the storefront is https.
    let local_http = public.scheme() == "http"
        && matches!(public.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    let web = Web(Arc::new(Inner {
        shop,
        return_url: format!("{origin}/bound"),
        origin,
        cookies: session::Cookies::new(&key, !local_http)?,
    }));
    Ok(Router::new()
        .route("/", get(shop::home))
        .route("/buy", post(shop::buy))
        .route("/signup", get(auth::signup_page).post(auth::signup))
        .route("/signin", get(auth::signin_page).post(auth::signin))
        .route("/signout", post(auth::signout))
        .route("/account", get(account::page))
        .route("/account/presentation", post(account::set_presentation))
        .route("/account/remove-card", post(account::remove_card))
        .route("/account/bind", post(account::bind))
        .route("/orders/{order_id}", get(orders::page))
        .route("/orders/{order_id}/refund", post(orders::refund))
        .route("/bind/{session_id}", get(pay::bind_page))
        .route("/bound", get(pay::bound))
        .route("/static/shop.css", get(stylesheet))
        .route("/static/shop.js", get(script))
        // Browsers ask for it on every site; there is none.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(page::not_found)
        .layer(middleware::from_fn_with_state(web.clone(), session::layer))
        .layer(middleware::from_fn(security_headers))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(web))
}

/// Headers on every answer. A handler may set its own policy or caching;
/// otherwise pages get the base policy and are never stored (they show a
/// shopper's account, orders and tokens of forms).
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(BASE_CSP));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Old browsers' `frame-ancestors 'none'`.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: no URL of the shop (an order, a
    // session id) reaches another site either way, but under `no-referrer`
    // browsers send `Origin: null` on the shop's own form posts, which the
    // origin check must then refuse.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Static files may be cached a little: they hold no shopper's data.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../static/shop.css"),
    )
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../static/shop.js"),
    )
}

#[cfg(test)]
mod tests;
