//! What every page shares: rendering a template, the header's sign-in
//! state, messages (`#flash`), and the shop's errors as pages that say
//! what to do.
use askama::Template;
use axum::{
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use paybind_shared::money::{format_minor, Money};

use super::session::Session;
use crate::domain::ShopError;

/// The header's view of the session: who is signed in, and the token of
/// its sign-out form.
pub struct Nav {
    pub user: Option<String>,
    pub csrf: String,
}

impl Nav {
    pub fn of(session: &Session) -> Self {
        Self {
            user: session.user().map(|u| u.as_str().to_owned()),
            csrf: session.csrf().to_owned(),
        }
    }
}

/// One message of `#flash`.
pub struct Flash {
    /// `notice` or `error` (a CSS class).
    pub kind: &'static str,
    pub text: String,
}

impl Flash {
    pub fn notice(text: impl Into<String>) -> Self {
        Self {
            kind: "notice",
            text: text.into(),
        }
    }

    pub fn error(text: impl Into<String>) -> Self {
        Self {
            kind: "error",
            text: text.into(),
        }
    }
}

/// A link offered on a message page.
pub struct Link {
    pub href: String,
    pub text: &'static str,
}

impl Link {
    pub fn to(href: impl Into<String>, text: &'static str) -> Self {
        Self {
            href: href.into(),
            text,
        }
    }
}

/// A page that only says something: an error, or an outcome.
#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    nav: Nav,
    title: &'a str,
    flash: Vec<Flash>,
    links: Vec<Link>,
}

/// A template as an HTML answer; a template that fails to render (it
/// cannot, but askama says it may) is a plain 500.
pub fn html<T: Template>(status: StatusCode, template: &T) -> Response {
    match template.render() {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

pub fn message(
    status: StatusCode,
    nav: Nav,
    title: &str,
    flash: Flash,
    links: Vec<Link>,
) -> Response {
    html(
        status,
        &MessagePage {
            nav,
            title,
            flash: vec![flash],
            links,
        },
    )
}

fn anonymous() -> Nav {
    Nav {
        user: None,
        csrf: String::new(),
    }
}

pub async fn not_found(session: Session) -> Response {
    message(
        StatusCode::NOT_FOUND,
        Nav::of(&session),
        "Not found",
        Flash::error("There is no such page."),
        vec![Link::to("/", "Back to the shop")],
    )
}

/// A form post that failed the origin or CSRF check.
pub fn forbidden_form() -> Response {
    message(
        StatusCode::FORBIDDEN,
        anonymous(),
        "Form refused",
        Flash::error(
            "This form could not be accepted: it came from another site, or the page it was on \
             is too old (after signing in or out, for instance). Go back, reload the page and \
             try again.",
        ),
        vec![Link::to("/", "Back to the shop")],
    )
}

pub fn bad_request(text: &str) -> Response {
    message(
        StatusCode::BAD_REQUEST,
        anonymous(),
        "Cannot do that",
        Flash::error(text),
        vec![Link::to("/", "Back to the shop")],
    )
}

/// A shop error as a page that says what happened and what to do next.
pub fn shop_error(nav: Nav, err: ShopError) -> Response {
    let (status, text) = explain(&err);
    let links = if nav.user.is_some() {
        vec![
            Link::to("/account", "Your account"),
            Link::to("/", "Back to the shop"),
        ]
    } else {
        vec![Link::to("/", "Back to the shop")]
    };
    message(
        status,
        nav,
        "Something went wrong",
        Flash::error(text),
        links,
    )
}

/// The status and the shopper's explanation of a shop error.
pub fn explain(err: &ShopError) -> (StatusCode, String) {
    let text = |s: &str| s.to_owned();
    match err {
        ShopError::Invalid(rejected) => (StatusCode::BAD_REQUEST, rejected.to_string()),
        ShopError::UserNotFound => (StatusCode::NOT_FOUND, text("There is no such account.")),
        ShopError::WrongCredentials => (
            StatusCode::UNAUTHORIZED,
            text("Wrong username or password."),
        ),
        ShopError::TooManyAttempts => (
            StatusCode::TOO_MANY_REQUESTS,
            text("Too many failed sign-ins for this username. Wait 15 minutes and try again."),
        ),
        ShopError::UserExists => (
            StatusCode::CONFLICT,
            text("This username is taken. Choose another one, or sign in."),
        ),
        ShopError::OrderNotFound => (StatusCode::NOT_FOUND, text("There is no such order.")),
        ShopError::SessionNotFound => (
            StatusCode::NOT_FOUND,
            text("This payment page is not one of this shop's."),
        ),
        ShopError::NoCardOnFile => (StatusCode::CONFLICT, text("You have no card on file.")),
        ShopError::OrderNotRefundable => (
            StatusCode::CONFLICT,
            text("Only a paid order can be refunded."),
        ),
        ShopError::IdempotencyKeyReused => (
            StatusCode::CONFLICT,
            text("This form was already used for something else. Reload the page and try again."),
        ),
        ShopError::PaymentUnavailable { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            text(
                "The payment service cannot be reached right now. Nothing was charged twice; \
                 try again in a moment.",
            ),
        ),
        ShopError::Refused(refusal) => (
            StatusCode::CONFLICT,
            format!(
                "The payment service refused: {} ({}).",
                refusal.message.trim_end_matches('.'),
                refusal.reason
            ),
        ),
        ShopError::DatabaseUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            text("The shop is busy. Try again in a moment; nothing is done twice."),
        ),
        ShopError::Store(e) => {
            tracing::error!(error = %e, "store error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                text("Something went wrong on our side. Try again later."),
            )
        }
        ShopError::Internal(e) => {
            tracing::error!(error = %e, "internal error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                text("Something went wrong on our side. Try again later."),
            )
        }
    }
}

/// Messages a redirect asks the next page to show (`?notice=…`): fixed
/// texts, so nothing a link carries is ever shown as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Welcome,
    SignedIn,
    SignedOut,
    PresentationSaved,
    CardRemoved,
    CardBound,
    BindFailed,
    BindExpired,
    BindOpen,
    Refunded,
}

impl Notice {
    pub fn code(self) -> &'static str {
        match self {
            Self::Welcome => "welcome",
            Self::SignedIn => "signed-in",
            Self::SignedOut => "signed-out",
            Self::PresentationSaved => "presentation-saved",
            Self::CardRemoved => "card-removed",
            Self::CardBound => "card-bound",
            Self::BindFailed => "bind-failed",
            Self::BindExpired => "bind-expired",
            Self::BindOpen => "bind-open",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        [
            Self::Welcome,
            Self::SignedIn,
            Self::SignedOut,
            Self::PresentationSaved,
            Self::CardRemoved,
            Self::CardBound,
            Self::BindFailed,
            Self::BindExpired,
            Self::BindOpen,
            Self::Refunded,
        ]
        .into_iter()
        .find(|n| n.code() == code)
    }

    pub fn flash(self) -> Flash {
        match self {
            Self::Welcome => Flash::notice("Welcome! Your account is ready."),
            Self::SignedIn => Flash::notice("You are signed in."),
            Self::SignedOut => Flash::notice("You are signed out."),
            Self::PresentationSaved => Flash::notice("Your setting is saved."),
            Self::CardRemoved => Flash::notice(
                "Your card is removed. Your next purchase asks for a card on the payment page.",
            ),
            Self::CardBound => Flash::notice(
                "Your card is on file: purchases within its limits are now paid at once.",
            ),
            Self::BindFailed => Flash::error(
                "The card was not added: the details were refused or the code was wrong. \
                 Nothing changed; you can try again.",
            ),
            Self::BindExpired => {
                Flash::error("The card page expired before it was finished. You can start again.")
            }
            Self::BindOpen => Flash::notice("The card page is not finished yet."),
            Self::Refunded => Flash::notice("Refunded."),
        }
    }
}

/// A `?notice=` of a page's query.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct NoticeQuery {
    pub notice: String,
}

impl NoticeQuery {
    pub fn flash(&self) -> Vec<Flash> {
        Notice::parse(&self.notice)
            .map(Notice::flash)
            .into_iter()
            .collect()
    }
}

/// A page to come back to after signing in: the account, or an order.
/// Anything else (another site, `//host`) is not followed.
pub fn is_return_path(path: &str) -> bool {
    path == "/account"
        || path.strip_prefix("/orders/").is_some_and(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// A value for a URL's query, percent-encoded.
pub fn query_value(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A card as the shop shows it: `Visa •••• 4242`.
pub fn card_label(brand: paybind_shared::model::CardBrand, last4: &str) -> String {
    use paybind_shared::model::CardBrand;
    let brand = match brand {
        CardBrand::Visa => "Visa",
        CardBrand::Mastercard => "Mastercard",
        CardBrand::UnionPay => "UnionPay",
        CardBrand::Amex => "American Express",
        CardBrand::Jcb => "JCB",
        CardBrand::Discover => "Discover",
        CardBrand::Other => "Card",
    };
    format!("{brand} •••• {last4}")
}

/// Money as the shop shows it: `800.00 CNY`.
pub fn money(amount: Money) -> String {
    amount.to_string()
}

/// Minor units of a currency as the shop shows them.
pub fn minor(amount_minor: i64, currency: paybind_shared::money::Currency) -> String {
    format_minor(amount_minor, currency)
}

/// A random key rendered into a form that buys or refunds: the same form
/// sent twice (a double click, a reload) is the same request, done once.
pub fn form_key() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// A form key as posted: 32 hexadecimal digits.
pub fn parse_form_key(raw: &str) -> Option<&str> {
    (raw.len() == 32 && raw.bytes().all(|b| b.is_ascii_hexdigit())).then_some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_own_pages_are_returned_to() {
        assert!(is_return_path("/account"));
        assert!(is_return_path("/orders/ord_0123abcd"));
        assert!(!is_return_path("//evil.example"));
        assert!(!is_return_path("/orders/"));
        assert!(!is_return_path("/orders/a/b"));
        assert!(!is_return_path("https://evil.example/account"));
        assert!(!is_return_path("/signin"));
    }

    #[test]
    fn notices_are_fixed_texts() {
        for code in ["welcome", "card-bound", "refunded"] {
            assert_eq!(Notice::parse(code).map(Notice::code), Some(code));
        }
        assert_eq!(Notice::parse("<script>"), None);
    }

    #[test]
    fn form_keys_are_32_hex_digits() {
        let key = form_key();
        assert_eq!(parse_form_key(&key), Some(key.as_str()));
        assert_eq!(parse_form_key("xyz"), None);
        assert_eq!(parse_form_key(&"g".repeat(32)), None);
    }
}
