//! Signing up, in and out.
use askama::Template;
use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use paybind_shared::{
    fields::{free_text, AllOk, At, Invalid, Rejected, Violation},
    ids::MerchantUserId,
    person::Phone,
};
use serde::Deserialize;

use super::{
    page::{self, Flash, Nav, Notice},
    session::{self, Posted, Session},
    Web,
};
use crate::domain::{NewUser, Password, ShopError};

/// Field errors of a form, shown beside their fields.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<Violation>);

impl FieldErrors {
    pub fn of(field: &'static str, message: impl Into<String>) -> Self {
        Self(vec![Violation {
            field,
            reason: "INVALID_ARGUMENT",
            message: message.into(),
        }])
    }

    /// Each rejected field's message, as a sentence.
    fn from(rejected: &Rejected) -> Self {
        Self(
            rejected
                .violations()
                .iter()
                .map(|v| Violation {
                    message: sentence(&v.message),
                    ..v.clone()
                })
                .collect(),
        )
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|v| v.field == field)
            .map(|v| v.message.as_str())
    }
}

/// `the password is short` → `The password is short.`
fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    let mut text: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignUpPage {
    nav: Nav,
    flash: Vec<Flash>,
    username: String,
    name: String,
    phone: String,
    errors: FieldErrors,
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    nav: Nav,
    flash: Vec<Flash>,
    username: String,
    next: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignUpForm {
    username: String,
    password: String,
    name: String,
    phone: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SignInForm {
    username: String,
    password: String,
    next: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NextQuery {
    next: String,
}

pub async fn signup_page(session: Session) -> Response {
    if session.user().is_some() {
        return Redirect::to("/account").into_response();
    }
    page::html(
        StatusCode::OK,
        &SignUpPage {
            nav: Nav::of(&session),
            flash: Vec::new(),
            username: String::new(),
            name: String::new(),
            phone: String::new(),
            errors: FieldErrors::default(),
        },
    )
}

/// Every field of the sign-up form, parsed; every fault at once.
fn parse_signup(form: &SignUpForm) -> Result<(NewUser, Password), FieldErrors> {
    let phone = match form.phone.trim() {
        "" => Ok(None),
        p => Phone::parse(p).map(Some).at("phone"),
    };
    let (id, password, name, phone) = (
        MerchantUserId::parse(form.username.trim())
            .map_err(|_| {
                Invalid::argument(
                    "the username must be 1 to 64 letters, digits or . _ : @ - (no spaces)",
                )
            })
            .at("username"),
        Password::parse(&form.password).at("password"),
        free_text(&form.name, 100, "the name").at("name"),
        phone,
    )
        .all_ok()
        .map_err(|rejected| FieldErrors::from(&rejected))?;
    let display_name = if name.is_empty() {
        id.as_str().to_owned()
    } else {
        name
    };
    Ok((
        NewUser {
            id,
            display_name,
            phone,
        },
        password,
    ))
}

pub async fn signup(
    State(web): State<Web>,
    session: Session,
    Posted(form): Posted<SignUpForm>,
) -> Response {
    let again = |errors: FieldErrors, flash: Vec<Flash>, status| {
        page::html(
            status,
            &SignUpPage {
                nav: Nav::of(&session),
                flash,
                username: form.username.trim().to_owned(),
                name: form.name.clone(),
                phone: form.phone.clone(),
                errors,
            },
        )
    };
    let (new, password) = match parse_signup(&form) {
        Ok(parsed) => parsed,
        Err(errors) => {
            let flash = vec![Flash::error("Please correct the fields marked below.")];
            return again(errors, flash, StatusCode::BAD_REQUEST);
        }
    };
    match web.shop().sign_up(new, password).await {
        Ok(user) => session::signed_in(
            user.id,
            Redirect::to(&format!("/?notice={}", Notice::Welcome.code())).into_response(),
        ),
        Err(ShopError::UserExists) => again(
            FieldErrors::of("username", "This username is taken. Choose another one."),
            vec![Flash::error(
                "This username is taken. Choose another one, or sign in.",
            )],
            StatusCode::CONFLICT,
        ),
        Err(e) => page::shop_error(Nav::of(&session), e),
    }
}

pub async fn signin_page(session: Session, Query(query): Query<NextQuery>) -> Response {
    if session.user().is_some() {
        return Redirect::to("/account").into_response();
    }
    signin_form(
        &session,
        String::new(),
        query.next,
        Vec::new(),
        StatusCode::OK,
    )
}

fn signin_form(
    session: &Session,
    username: String,
    next: String,
    flash: Vec<Flash>,
    status: StatusCode,
) -> Response {
    page::html(
        status,
        &SignInPage {
            nav: Nav::of(session),
            flash,
            username,
            // Only a page of one's own is returned to.
            next: if page::is_return_path(&next) {
                next
            } else {
                String::new()
            },
        },
    )
}

pub async fn signin(
    State(web): State<Web>,
    session: Session,
    Posted(form): Posted<SignInForm>,
) -> Response {
    let username = form.username.trim().to_owned();
    let wrong = |flash: &str, status| {
        signin_form(
            &session,
            username.clone(),
            form.next.clone(),
            vec![Flash::error(flash)],
            status,
        )
    };
    // A name or password that cannot be valid is wrong like any other:
    // the same answer, whatever was wrong.
    let (Ok(id), Ok(password)) = (
        MerchantUserId::parse(&username),
        Password::parse(&form.password),
    ) else {
        return wrong("Wrong username or password.", StatusCode::UNAUTHORIZED);
    };
    match web.shop().sign_in(&id, password).await {
        Ok(user) => {
            let to = if page::is_return_path(&form.next) {
                form.next.clone()
            } else {
                format!("/?notice={}", Notice::SignedIn.code())
            };
            session::signed_in(user.id, Redirect::to(&to).into_response())
        }
        Err(ShopError::WrongCredentials) => {
            wrong("Wrong username or password.", StatusCode::UNAUTHORIZED)
        }
        Err(e @ ShopError::TooManyAttempts) => {
            let (status, text) = page::explain(&e);
            wrong(&text, status)
        }
        Err(e) => page::shop_error(Nav::of(&session), e),
    }
}

pub async fn signout(Posted(_): Posted<serde::de::IgnoredAny>) -> Response {
    session::signed_out(
        Redirect::to(&format!("/?notice={}", Notice::SignedOut.code())).into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(username: &str, password: &str, name: &str, phone: &str) -> SignUpForm {
        SignUpForm {
            username: username.into(),
            password: password.into(),
            name: name.into(),
            phone: phone.into(),
        }
    }

    #[test]
    fn sign_up_names_every_field_at_fault() {
        let Err(errors) = parse_signup(&form("no spaces", "short", "\u{202e}x", "12")) else {
            panic!("must be refused");
        };
        for field in ["username", "password", "name", "phone"] {
            let message = errors.get(field).unwrap_or_else(|| panic!("{field}"));
            assert!(message.starts_with(char::is_uppercase), "{message}");
            assert!(message.ends_with('.'), "{message}");
        }
        assert!(errors
            .get("username")
            .is_some_and(|m| m.contains("username")));
    }

    #[test]
    fn the_name_defaults_to_the_username() {
        let (user, _) = parse_signup(&form(" carol ", "long enough", "", "")).expect("valid");
        assert_eq!(user.id.as_str(), "carol");
        assert_eq!(user.display_name, "carol");
        assert_eq!(user.phone, None);
    }
}
