//! `/my-bindings`: the shopper's own page at the payment institution. A
//! phone number, the one-time code sent to it, then every binding made under
//! it at every merchant, each with a button that ends it. The rules are the
//! domain's (`domain::my_bindings`); this module shows them.
//!
//! The sign-in lives in a cookie (`HttpOnly`, `SameSite=Strict`, this path
//! only, `Secure` on HTTPS) holding a random secret; forms after sign-in
//! carry a token derived from it, and any form posted from another site is
//! refused before it is read.
use std::sync::Arc;

use askama::Template;
use axum::{
    body::Bytes,
    extract::{Query, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use paybind_shared::{ids::BindingId, money::format_minor, person::Phone};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{
    i18n::{Lang, MyTexts},
    page_response,
    views::{local_date, Frame},
    PageState,
};
use crate::domain::{
    error::DomainError,
    my_bindings::{CodeCheck, LoginSecret, LoginState, ShopperLogin, SIGNED_IN_MS},
};

const COOKIE: &str = "paybind_my";
const PATH: &str = "/my-bindings";

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Shown {
    lang: Option<String>,
    /// A passing message, by key (never data).
    notice: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MyForm {
    lang: Option<String>,
    csrf: Option<String>,
    phone: String,
    code: String,
    binding_id: String,
}

/// The messages a redirect may carry, by key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notice {
    WrongCode,
    CodeExpired,
    Ended,
    NotYours,
    SignedOut,
    TooMany,
}

impl Notice {
    fn key(self) -> &'static str {
        match self {
            Self::WrongCode => "wrong-code",
            Self::CodeExpired => "code-expired",
            Self::Ended => "ended",
            Self::NotYours => "not-yours",
            Self::SignedOut => "signed-out",
            Self::TooMany => "too-many",
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        [
            Self::WrongCode,
            Self::CodeExpired,
            Self::Ended,
            Self::NotYours,
            Self::SignedOut,
            Self::TooMany,
        ]
        .into_iter()
        .find(|n| n.key() == key)
    }

    fn text(self, t: &MyTexts) -> &'static str {
        match self {
            Self::WrongCode => t.wrong_code,
            Self::CodeExpired => t.code_expired,
            Self::Ended => t.ended,
            Self::NotYours => t.not_yours,
            Self::SignedOut => t.signed_out,
            Self::TooMany => t.too_many,
        }
    }
}

#[derive(Template)]
#[template(path = "my_phone.html")]
struct PhonePage {
    frame: Frame,
    my: &'static MyTexts,
    notice: Option<&'static str>,
    error: Option<&'static str>,
    phone: String,
}

#[derive(Template)]
#[template(path = "my_code.html")]
struct CodePage {
    frame: Frame,
    my: &'static MyTexts,
    notice: Option<&'static str>,
    masked_phone: String,
    csrf: String,
    outbox: bool,
}

struct Row {
    binding_id: String,
    merchant: String,
    card: String,
    expiry: String,
    limits: String,
    since: String,
}

#[derive(Template)]
#[template(path = "my_list.html")]
struct ListPage {
    frame: Frame,
    my: &'static MyTexts,
    notice: Option<&'static str>,
    masked_phone: String,
    csrf: String,
    rows: Vec<Row>,
}

fn frame(lang: Lang, heading: &str) -> Frame {
    let mut frame = Frame::new(lang, heading);
    frame.self_path = PATH.to_owned();
    frame
}

fn see(lang: Lang, notice: Option<Notice>) -> Response {
    let notice = notice
        .map(|n| format!("&notice={}", n.key()))
        .unwrap_or_default();
    Redirect::to(&format!("{PATH}?lang={}{notice}", lang.code())).into_response()
}

impl PageState {
    /// A posted form and its language; one posted from another site is
    /// refused before it is read further.
    fn my_form(&self, headers: &HeaderMap, body: &[u8]) -> Result<(Lang, MyForm), Box<Response>> {
        let form: MyForm = serde_urlencoded::from_bytes(body).unwrap_or_default();
        let lang = Lang::choose(form.lang.as_deref(), headers);
        match self.refuse_foreign_origin(lang, headers) {
            Some(refused) => Err(Box::new(refused)),
            None => Ok((lang, form)),
        }
    }

    /// The sign-in secret the request's cookie holds, if any.
    fn my_secret(&self, headers: &HeaderMap) -> Option<LoginSecret> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .and_then(|(_, value)| LoginSecret::from_cookie(value))
    }

    /// The sign-in the request's cookie names, while it lasts.
    async fn my_login(&self, headers: &HeaderMap) -> Result<Option<ShopperLogin>, DomainError> {
        match self.my_secret(headers) {
            Some(secret) => self.services.shopper_login(&secret).await,
            None => Ok(None),
        }
    }

    fn my_csrf(&self, login: &ShopperLogin) -> String {
        self.services
            .otp_hasher
            .mac_hex(&[b"paybind/my-bindings/csrf/v1", login.id_hash.as_bytes()])
    }

    fn my_csrf_ok(&self, login: &ShopperLogin, posted: Option<&str>) -> bool {
        let expected = self.my_csrf(login);
        posted.is_some_and(|p| bool::from(expected.as_bytes().ct_eq(p.as_bytes())))
    }

    fn my_cookie(&self, value: &str, max_age_ms: i64) -> HeaderValue {
        let secure = if self.public_origin.starts_with("https://") {
            "; Secure"
        } else {
            ""
        };
        HeaderValue::from_str(&format!(
            "{COOKIE}={value}; Path={PATH}; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
            max_age_ms / 1000
        ))
        .unwrap_or(HeaderValue::from_static("paybind_my=; Max-Age=0"))
    }

    fn my_error(&self, lang: Lang, e: &DomainError) -> Response {
        let t = lang.my_texts();
        let (status, text) = match e {
            DomainError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, t.too_many),
            DomainError::SmsUnavailable => (StatusCode::SERVICE_UNAVAILABLE, t.sms_unavailable),
            _ => {
                tracing::error!(error = %e, "the shopper's page failed");
                (StatusCode::SERVICE_UNAVAILABLE, t.unavailable)
            }
        };
        page_response(
            status,
            PhonePage {
                frame: frame(lang, t.title),
                my: t,
                notice: None,
                error: Some(text),
                phone: String::new(),
            },
            None,
        )
    }
}

/// `GET /my-bindings`: the step the browser's sign-in is at.
pub async fn show(
    State(state): State<Arc<PageState>>,
    Query(q): Query<Shown>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::choose(q.lang.as_deref(), &headers);
    let t = lang.my_texts();
    let notice = q
        .notice
        .as_deref()
        .and_then(Notice::from_key)
        .map(|n| n.text(t));
    let login = match state.my_login(&headers).await {
        Ok(login) => login,
        Err(e) => return state.my_error(lang, &e),
    };
    let Some(login) = login else {
        return page_response(
            StatusCode::OK,
            PhonePage {
                frame: frame(lang, t.title),
                my: t,
                notice,
                error: None,
                phone: String::new(),
            },
            None,
        );
    };
    let csrf = state.my_csrf(&login);
    if login.state != LoginState::SignedIn {
        return page_response(
            StatusCode::OK,
            CodePage {
                frame: frame(lang, t.code_title),
                my: t,
                notice,
                masked_phone: login.phone.masked(),
                csrf,
                outbox: state.outbox.is_some(),
            },
            None,
        );
    }
    let bindings = match state.services.shopper_bindings(&login).await {
        Ok(bindings) => bindings,
        Err(e) => return state.my_error(lang, &e),
    };
    let offset = state.services.policy.utc_offset_minutes;
    let rows = bindings
        .into_iter()
        .map(|b| {
            let card = &b.binding.card;
            let limits = &b.binding.limits;
            Row {
                binding_id: b.binding.id.to_string(),
                merchant: b.merchant_name,
                card: format!("{:?} •••• {}", card.brand, card.last4),
                expiry: format!("{:02}/{}", card.expiry.month, card.expiry.year),
                limits: format!(
                    "{} {} · {} {}",
                    format_minor(limits.per_payment.amount_minor(), limits.currency()),
                    t.per_payment,
                    format_minor(limits.daily.amount_minor(), limits.currency()),
                    t.per_day
                ),
                since: local_date(b.binding.created_ms, offset),
            }
        })
        .collect();
    page_response(
        StatusCode::OK,
        ListPage {
            frame: frame(lang, t.list_title),
            my: t,
            notice,
            masked_phone: login.phone.masked(),
            csrf,
            rows,
        },
        None,
    )
}

/// `POST /my-bindings/code`: sends a code to the phone and starts a sign-in.
pub async fn send_code(
    State(state): State<Arc<PageState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (lang, form) = match state.my_form(&headers, &body) {
        Ok(read) => read,
        Err(refused) => return *refused,
    };
    let t = lang.my_texts();
    let Ok(phone) = Phone::parse(&form.phone) else {
        return page_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            PhonePage {
                frame: frame(lang, t.title),
                my: t,
                notice: None,
                error: Some(t.bad_phone),
                phone: form.phone.chars().take(32).collect(),
            },
            None,
        );
    };
    match state.services.send_shopper_code(phone).await {
        Ok(secret) => {
            let mut response = see(lang, None);
            response.headers_mut().append(
                header::SET_COOKIE,
                state.my_cookie(secret.expose(), SIGNED_IN_MS),
            );
            response
        }
        Err(e) => state.my_error(lang, &e),
    }
}

/// `POST /my-bindings/verify`: the code from the SMS.
pub async fn verify(
    State(state): State<Arc<PageState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (lang, form) = match state.my_form(&headers, &body) {
        Ok(read) => read,
        Err(refused) => return *refused,
    };
    let login = match state.my_login(&headers).await {
        Ok(Some(login)) => login,
        Ok(None) => return see(lang, Some(Notice::CodeExpired)),
        Err(e) => return state.my_error(lang, &e),
    };
    if !state.my_csrf_ok(&login, form.csrf.as_deref()) {
        return see(lang, None);
    }
    match state.services.verify_shopper_code(&login, &form.code).await {
        Ok(CodeCheck::SignedIn(secret)) => {
            let mut response = see(lang, None);
            response.headers_mut().append(
                header::SET_COOKIE,
                state.my_cookie(secret.expose(), SIGNED_IN_MS),
            );
            response
        }
        Ok(CodeCheck::AlreadySignedIn) => see(lang, None),
        Ok(CodeCheck::Wrong { tries_left: 0 }) | Ok(CodeCheck::Expired) => {
            let mut response = see(lang, Some(Notice::CodeExpired));
            response
                .headers_mut()
                .append(header::SET_COOKIE, state.my_cookie("", 0));
            response
        }
        Ok(CodeCheck::Wrong { .. }) => see(lang, Some(Notice::WrongCode)),
        Err(DomainError::RateLimited { .. }) => see(lang, Some(Notice::TooMany)),
        Err(e) => state.my_error(lang, &e),
    }
}

/// `POST /my-bindings/end`: ends one of the shopper's bindings.
pub async fn end(State(state): State<Arc<PageState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (lang, form) = match state.my_form(&headers, &body) {
        Ok(read) => read,
        Err(refused) => return *refused,
    };
    let login = match state.my_login(&headers).await {
        Ok(Some(login)) if login.state == LoginState::SignedIn => login,
        Ok(_) => return see(lang, Some(Notice::SignedOut)),
        Err(e) => return state.my_error(lang, &e),
    };
    if !state.my_csrf_ok(&login, form.csrf.as_deref()) {
        return see(lang, None);
    }
    let Ok(binding_id) = BindingId::parse(&form.binding_id) else {
        return see(lang, Some(Notice::NotYours));
    };
    match state
        .services
        .end_binding_as_shopper(&login, &binding_id)
        .await
    {
        Ok(Some(_)) => see(lang, Some(Notice::Ended)),
        Ok(None) => see(lang, Some(Notice::NotYours)),
        Err(e) => state.my_error(lang, &e),
    }
}

/// `POST /my-bindings/sign-out`.
pub async fn sign_out(
    State(state): State<Arc<PageState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (lang, _) = match state.my_form(&headers, &body) {
        Ok(read) => read,
        Err(refused) => return *refused,
    };
    if let Some(secret) = state.my_secret(&headers) {
        if let Err(e) = state.services.sign_out_shopper(&secret).await {
            return state.my_error(lang, &e);
        }
    }
    let mut response = see(lang, Some(Notice::SignedOut));
    response
        .headers_mut()
        .append(header::SET_COOKIE, state.my_cookie("", 0));
    response
}
