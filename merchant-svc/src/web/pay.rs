//! The payment institution's page, shown the way the shopper chose
//! (redirect, embedded in an iframe, or in a popup), and the way back:
//! `/bound?session_id=…`, where the shop learns the outcome from
//! payment-svc, server to server (the browser's word is never taken: a
//! `status` in a message is only a hint to stop waiting).
use askama::Template;
use axum::{
    extract::{Path, Query, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use paybind_shared::{ids::SessionId, model::Presentation, model::SessionStatus};
use serde::Deserialize;

use super::{
    page::{self, Flash, Link, Nav, Notice},
    session::{Session, Shopper},
    Web, BASE_CSP,
};
use crate::domain::{model::SessionEnd, ShopError};

/// The presentation as forms and settings spell it.
pub fn presentation_value(p: Presentation) -> &'static str {
    match p {
        Presentation::Redirect => "redirect",
        Presentation::Embedded => "embedded",
        Presentation::Popup => "popup",
    }
}

pub fn parse_presentation(value: &str) -> Option<Presentation> {
    match value {
        "redirect" => Some(Presentation::Redirect),
        "embedded" => Some(Presentation::Embedded),
        "popup" => Some(Presentation::Popup),
        _ => None,
    }
}

/// How a presentation looks to the shopper.
pub fn presentation_label(p: Presentation) -> &'static str {
    match p {
        Presentation::Redirect => "On its own page: this window goes there and comes back",
        Presentation::Embedded => "Inside the shop's page",
        Presentation::Popup => "In a secure pop-up window",
    }
}

/// Where the payment page sends the shopper back, for a session.
pub fn done_url(session_id: &SessionId) -> String {
    format!(
        "/bound?session_id={}",
        page::query_value(session_id.as_str())
    )
}

/// The payment page's address, if it is one a browser may be sent to:
/// http(s) with a host (never `javascript:` or `data:`, whatever
/// payment-svc answered).
pub fn page_url(raw: &str) -> Option<url::Url> {
    let url = url::Url::parse(raw).ok()?;
    (matches!(url.scheme(), "http" | "https") && url.host_str().is_some()).then_some(url)
}

/// A payment page to show inside a storefront page (embedded or popup),
/// with what the script needs, as `data-` attributes.
pub struct PaymentBox {
    pub page_url: String,
    /// The only origin whose messages are heard (and framed).
    pub origin: String,
    pub session_id: String,
    pub done_url: String,
    pub embedded: bool,
    /// Paying for an order (else binding a card): the wording.
    pub paying: bool,
}

impl PaymentBox {
    pub fn new(
        raw_url: &str,
        session_id: &SessionId,
        presentation: Presentation,
        paying: bool,
    ) -> Option<Self> {
        let url = page_url(raw_url)?;
        Some(Self {
            origin: url.origin().ascii_serialization(),
            page_url: url.into(),
            session_id: session_id.as_str().to_owned(),
            done_url: done_url(session_id),
            embedded: presentation == Presentation::Embedded,
            paying,
        })
    }

    /// The page's policy: the base one, with the payment origin as the
    /// only frame allowed where the page embeds it.
    pub fn csp(&self) -> String {
        if self.embedded {
            BASE_CSP.replace("frame-src 'none'", &format!("frame-src {}", self.origin))
        } else {
            BASE_CSP.to_owned()
        }
    }

    /// `response` under this box's policy.
    pub fn apply_csp(&self, mut response: Response) -> Response {
        match HeaderValue::from_str(&self.csp()) {
            Ok(value) => {
                response
                    .headers_mut()
                    .insert(header::CONTENT_SECURITY_POLICY, value);
                response
            }
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
}

/// A payment page that cannot be shown.
pub fn unusable_page(nav: Nav) -> Response {
    tracing::error!("payment-svc gave a page URL that is not http(s)");
    page::message(
        StatusCode::BAD_GATEWAY,
        nav,
        "Cannot show the payment page",
        Flash::error("The payment page cannot be shown. Try again later."),
        vec![Link::to("/account", "Your account")],
    )
}

#[derive(Template)]
#[template(path = "bind.html")]
struct BindPage {
    nav: Nav,
    flash: Vec<Flash>,
    payment: PaymentBox,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct BindQuery {
    presentation: String,
}

/// A card binding shown inside the shop (embedded or popup).
pub async fn bind_page(
    State(web): State<Web>,
    shopper: Shopper,
    Path(raw_id): Path<String>,
    Query(query): Query<BindQuery>,
) -> Response {
    let nav = Nav::of(&shopper.session);
    let Ok(session_id) = SessionId::parse(&raw_id) else {
        return page::shop_error(nav, ShopError::SessionNotFound);
    };
    let presentation = match parse_presentation(&query.presentation) {
        Some(p @ (Presentation::Embedded | Presentation::Popup)) => p,
        _ => return page::bad_request("This link is incomplete: start again from your account."),
    };
    let info = match web.shop().session_of(&shopper.id, &session_id).await {
        Ok(info) => info,
        Err(e) => return page::shop_error(nav, e),
    };
    if SessionEnd::of(info.status).is_some() {
        return Redirect::to(&done_url(&session_id)).into_response();
    }
    let Some(payment) = PaymentBox::new(&info.page_url, &session_id, presentation, false) else {
        return unusable_page(nav);
    };
    let page = BindPage {
        nav,
        flash: Vec::new(),
        payment,
    };
    page.payment.apply_csp(page::html(StatusCode::OK, &page))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct BoundQuery {
    session_id: String,
}

/// The notice for a card binding's outcome.
fn bind_notice(status: SessionStatus) -> Notice {
    match status {
        SessionStatus::Completed => Notice::CardBound,
        SessionStatus::Failed => Notice::BindFailed,
        SessionStatus::Expired => Notice::BindExpired,
        SessionStatus::Open | SessionStatus::AwaitingVerification => Notice::BindOpen,
    }
}

/// The way back from the payment page (the session's return URL, or the
/// script on "done"): the outcome is read from payment-svc and applied,
/// then the shopper sees the order or their account. Anyone may open it —
/// it only applies what payment-svc says — but only the shopper who
/// started the session is shown anything of it.
pub async fn bound(
    State(web): State<Web>,
    session: Session,
    Query(query): Query<BoundQuery>,
) -> Response {
    let nav = Nav::of(&session);
    let Ok(session_id) = SessionId::parse(query.session_id.trim()) else {
        return page::bad_request("This link is incomplete: it names no payment session.");
    };
    let outcome = match web.shop().complete_session(&session_id).await {
        Ok(outcome) => outcome,
        Err(ShopError::PaymentUnavailable { .. } | ShopError::DatabaseUnavailable) => {
            return page::message(
                StatusCode::SERVICE_UNAVAILABLE,
                nav,
                "Not confirmed yet",
                Flash::error(
                    "We could not confirm the outcome with the payment service just now. The \
                     shop applies it on its own in a moment: see your account shortly.",
                ),
                vec![Link::to("/account", "Your account")],
            );
        }
        Err(e) => return page::shop_error(nav, e),
    };
    let mine = session.user() == Some(&outcome.user.id);
    let target = match &outcome.order {
        Some(order) => format!("/orders/{}", order.id),
        None => format!("/account?notice={}", bind_notice(outcome.status).code()),
    };
    if mine {
        return Redirect::to(&target).into_response();
    }
    let back = match &outcome.order {
        Some(order) => format!("/orders/{}", order.id),
        None => "/account".to_owned(),
    };
    page::message(
        StatusCode::OK,
        nav,
        "Thank you",
        Flash::notice(
            "The payment page is done and the shop has recorded its outcome. Sign in with the \
             account that started it to see it.",
        ),
        vec![Link::to(
            format!("/signin?next={}", page::query_value(&back)),
            "Sign in",
        )],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_pages_are_shown() {
        assert!(page_url("https://pay.example/bind/bs_1").is_some());
        assert!(page_url("http://localhost:8081/bind/bs_1").is_some());
        assert!(page_url("javascript:alert(1)").is_none());
        assert!(page_url("data:text/html,x").is_none());
        assert!(page_url("/bind/bs_1").is_none());
    }

    #[test]
    fn an_embedded_page_may_frame_the_payment_origin_only() {
        let id = SessionId::parse("bs_0123").expect("id");
        let embedded = PaymentBox::new(
            "http://localhost:8081/bind/bs_0123?x=1",
            &id,
            Presentation::Embedded,
            true,
        )
        .expect("valid");
        assert_eq!(embedded.origin, "http://localhost:8081");
        assert!(embedded.csp().contains("frame-src http://localhost:8081;"));
        assert!(embedded.csp().contains("frame-ancestors 'none'"));
        let popup = PaymentBox::new(
            "https://pay.example/bind/bs_0123",
            &id,
            Presentation::Popup,
            true,
        )
        .expect("valid");
        assert!(popup.csp().contains("frame-src 'none'"));
        assert_eq!(popup.done_url, "/bound?session_id=bs_0123");
    }

    #[test]
    fn presentations_read_back() {
        for p in [
            Presentation::Redirect,
            Presentation::Embedded,
            Presentation::Popup,
        ] {
            assert_eq!(parse_presentation(presentation_value(p)), Some(p));
        }
        assert_eq!(parse_presentation("REDIRECT"), None);
    }
}
