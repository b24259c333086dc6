//! The binding page, served by payment-svc over HTTP beside its gRPC API:
//! the shopper's side of a bind session, in any of the three presentations
//! (redirect, embedded in the merchant's page, popup). It drives the very
//! same session as direct entry, through the same domain calls: nothing
//! here decides what is valid, verified or paid.
//!
//! Every page is rendered on the server from templates checked at compile
//! time; the one stylesheet and the one script are served from here, so
//! the Content-Security-Policy allows nothing from anywhere else.
use std::sync::Arc;

use askama::Template;
use axum::{
    extract::State,
    http::{header, HeaderValue, StatusCode},
    middleware,
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Router,
};
use paybind_shared::model::Presentation;

use crate::domain::{merchants::Merchant, sessions::SessionView, sms::DevOutbox, Services};

mod bind;
mod csrf;
mod i18n;
mod my_bindings;
mod views;

use i18n::Lang;
use views::{ClosedPage, Frame, OutboxPage};

/// What the page handlers share.
pub struct PageState {
    pub services: Arc<Services>,
    /// The SMS outbox, shown at `/dev/sms-outbox` in development only.
    pub outbox: Option<Arc<DevOutbox>>,
    /// `scheme://host[:port]` of `public_base_url`: the only origin the
    /// page's forms may be posted from.
    pub public_origin: String,
}

pub fn router(state: Arc<PageState>) -> Router {
    let mut router = Router::new()
        .route("/bind/{id}", get(bind::show))
        .route("/bind/{id}/details", post(bind::details))
        .route("/bind/{id}/code", post(bind::code))
        .route("/bind/{id}/resend", post(bind::resend))
        .route("/bind/{id}/return", post(bind::back_to_merchant))
        .route("/my-bindings", get(my_bindings::show))
        .route("/my-bindings/code", post(my_bindings::send_code))
        .route("/my-bindings/verify", post(my_bindings::verify))
        .route("/my-bindings/end", post(my_bindings::end))
        .route("/my-bindings/sign-out", post(my_bindings::sign_out))
        .route("/static/page.css", get(stylesheet))
        .route("/static/page.js", get(script))
        .route("/healthz", get(|| async { "ok" }))
        // No icon: an answer, so that browsers do not log a failed load.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }));
    if state.outbox.is_some() {
        router = router.route("/dev/sms-outbox", get(outbox));
    }
    router
        .fallback(not_found)
        .layer(middleware::map_response(baseline_headers))
        .with_state(state)
}

/// A rendered page with its security headers. `session` is the page's
/// merchant and session: only an embedded session's page may be framed,
/// and only by that merchant's registered origins; a form may send the
/// browser on to the session's return URL only.
fn page_response(
    status: StatusCode,
    page: impl Template,
    session: Option<(&Merchant, &SessionView)>,
) -> Response {
    let body = match page.render() {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "page template failed");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be shown",
            )
                .into_response();
        }
    };
    let mut frame_ancestors = "'none'".to_owned();
    let mut form_action = "'self'".to_owned();
    if let Some((merchant, view)) = session {
        if view.session.presentation == Presentation::Embedded
            && !merchant.allowed_origins.is_empty()
        {
            frame_ancestors = merchant.allowed_origins.join(" ");
        }
        if let Ok(url) = url::Url::parse(&view.session.return_url) {
            form_action.push(' ');
            form_action.push_str(&url.origin().ascii_serialization());
        }
    }
    let csp = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; \
         form-action {form_action}; frame-ancestors {frame_ancestors}"
    );
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    if frame_ancestors == "'none'" {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

/// On every response: no sniffing, no referrer (page URLs name a
/// session), nothing cached (pages show and take card data), and, unless
/// the page set its own, a policy that allows nothing foreign and no
/// framing at all.
async fn baseline_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../static/page.css"),
    )
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../static/page.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn not_found(headers: axum::http::HeaderMap) -> Response {
    let lang = Lang::choose(None, &headers);
    let t = lang.texts();
    page_response(
        StatusCode::NOT_FOUND,
        ClosedPage {
            frame: Frame::new(lang, t.unknown_title),
            text: t.unknown_text,
            reload: None,
        },
        None,
    )
}

/// Development only: the codes sent, newest first (linked from the code
/// step, so that a shopper can try the page without a phone).
async fn outbox(State(state): State<Arc<PageState>>, headers: axum::http::HeaderMap) -> Response {
    let lang = Lang::choose(None, &headers);
    let messages = state
        .outbox
        .as_ref()
        .map(|o| o.messages())
        .unwrap_or_default()
        .into_iter()
        .rev()
        .take(50)
        .map(|m| {
            let time = views::clock_time(m.sent_at_ms, state.services.policy.utc_offset_minutes);
            (time, m.to, m.text)
        })
        .collect();
    page_response(
        StatusCode::OK,
        OutboxPage {
            frame: Frame::new(lang, lang.texts().outbox_title),
            messages,
        },
        None,
    )
}
