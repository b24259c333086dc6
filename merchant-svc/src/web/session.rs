//! Browser sessions and CSRF protection.
//!
//! A session lives entirely in one cookie, encrypted and authenticated
//! with the configured key (axum-extra's `PrivateCookieJar`, AES-256-GCM):
//! who is signed in (and since when), and the session's CSRF token. A
//! browser without a valid cookie gets a fresh anonymous one, so even the
//! sign-in form carries a token. Signing in or out replaces the whole
//! session, token included.
//!
//! Every form post is checked by [`Posted`] before its handler runs: its
//! `Origin` (when the browser sends one) must be this storefront, and its
//! `csrf` field must equal the session's token (compared in constant time).
use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, HeaderMap, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use axum_extra::extract::{
    cookie::{Cookie, Key, SameSite},
    PrivateCookieJar,
};
use paybind_shared::{clock::now_ms, ids::MerchantUserId};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{page, Web};

/// How long a sign-in lasts, at most (the cookie itself lasts as long as
/// the browser keeps it).
const SIGNED_IN_FOR_MS: i64 = 12 * 60 * 60 * 1000;

/// The cookie's format version: a session of another format is not read.
const FORMAT: u8 = 1;

/// A fresh random key, when none is configured (development).
pub fn random_key() -> Vec<u8> {
    let mut key = vec![0u8; crate::config::COOKIE_KEY_BYTES];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
    key
}

/// The session cookie's key and attributes.
pub struct Cookies {
    key: Key,
    secure: bool,
}

impl Cookies {
    pub fn new(key: &[u8], secure: bool) -> anyhow::Result<Self> {
        let key = Key::try_from(key).map_err(|e| anyhow::anyhow!("web.cookie_key: {e}"))?;
        Ok(Self { key, secure })
    }

    /// `__Host-` where the cookie is `Secure`: the browser then keeps it
    /// only for this host, path `/`, over https — no sibling domain can
    /// set or shadow it.
    fn name(&self) -> &'static str {
        if self.secure {
            "__Host-shop_session"
        } else {
            "shop_session"
        }
    }

    fn load(&self, headers: &HeaderMap) -> Option<Session> {
        let jar = PrivateCookieJar::from_headers(headers, self.key.clone());
        Session::decode(jar.get(self.name())?.value(), now_ms())
    }

    fn store(&self, session: &Session) -> PrivateCookieJar {
        let cookie = Cookie::build((self.name(), session.encode()))
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .path("/")
            .build();
        PrivateCookieJar::new(self.key.clone()).add(cookie)
    }
}

/// One browser's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    user: Option<MerchantUserId>,
    signed_in_ms: i64,
    csrf: String,
}

/// A session as its cookie holds it.
#[derive(Serialize, Deserialize)]
struct Stored {
    v: u8,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    since: i64,
    csrf: String,
}

impl Session {
    fn anonymous() -> Self {
        Self {
            user: None,
            signed_in_ms: 0,
            csrf: hex::encode(rand::random::<[u8; 32]>()),
        }
    }

    fn signed_in(user: MerchantUserId) -> Self {
        Self {
            user: Some(user),
            signed_in_ms: now_ms(),
            ..Self::anonymous()
        }
    }

    pub fn user(&self) -> Option<&MerchantUserId> {
        self.user.as_ref()
    }

    /// The token every form of this session carries.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    fn encode(&self) -> String {
        serde_urlencoded::to_string(Stored {
            v: FORMAT,
            user: self.user.as_ref().map(|u| u.as_str().to_owned()),
            since: self.signed_in_ms,
            csrf: self.csrf.clone(),
        })
        .unwrap_or_default()
    }

    /// A session from its (decrypted) cookie; `None` if it is of another
    /// format or unreadable. A sign-in older than its lifetime is dropped.
    fn decode(value: &str, now_ms: i64) -> Option<Self> {
        let stored: Stored = serde_urlencoded::from_str(value).ok()?;
        if stored.v != FORMAT || stored.csrf.len() != 64 {
            return None;
        }
        let user = stored
            .user
            .filter(|_| now_ms - stored.since < SIGNED_IN_FOR_MS)
            .and_then(|u| MerchantUserId::parse(&u).ok());
        Some(Self {
            signed_in_ms: if user.is_some() { stored.since } else { 0 },
            user,
            csrf: stored.csrf,
        })
    }
}

/// A handler's request to replace the session: put in its response's
/// extensions ([`signed_in`], [`signed_out`]).
#[derive(Debug, Clone)]
enum Change {
    SignedIn(MerchantUserId),
    SignedOut,
}

/// `response`, and the browser is now signed in as `user` (a new session,
/// with a new CSRF token).
pub fn signed_in(user: MerchantUserId, mut response: Response) -> Response {
    response.extensions_mut().insert(Change::SignedIn(user));
    response
}

/// `response`, and the browser is signed out (a new anonymous session).
pub fn signed_out(mut response: Response) -> Response {
    response.extensions_mut().insert(Change::SignedOut);
    response
}

/// Loads the browser's session (or starts one) for the handlers, and sets
/// the cookie when the session is new or replaced.
pub async fn layer(
    axum::extract::State(web): axum::extract::State<Web>,
    mut request: Request,
    next: Next,
) -> Response {
    let cookies = &web.0.cookies;
    let loaded = cookies.load(request.headers());
    let fresh = loaded.is_none();
    let session = loaded.unwrap_or_else(Session::anonymous);
    request.extensions_mut().insert(session.clone());
    let mut response = next.run(request).await;
    let replaced = match response.extensions_mut().remove::<Change>() {
        Some(Change::SignedIn(user)) => Some(Session::signed_in(user)),
        Some(Change::SignedOut) => Some(Session::anonymous()),
        None if fresh => Some(session),
        None => None,
    };
    match replaced {
        Some(session) => (cookies.store(&session), response).into_response(),
        None => response,
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        // Put there by `layer`, which wraps every route.
        parts.extensions.get::<Session>().cloned().ok_or_else(|| {
            tracing::error!("a storefront route runs without the session layer");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        })
    }
}

/// A signed-in shopper; anyone else is sent to the sign-in page.
pub struct Shopper {
    pub id: MerchantUserId,
    pub session: Session,
}

impl<S: Send + Sync> FromRequestParts<S> for Shopper {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let session = Session::from_request_parts(parts, state).await?;
        match session.user.clone() {
            Some(id) => Ok(Self { id, session }),
            None => {
                // Back to this page after signing in, when it is one to
                // come back to (a GET of a page of one's own).
                let here = parts.uri.path();
                let target = if parts.method == Method::GET && page::is_return_path(here) {
                    format!("/signin?next={}", page::query_value(here))
                } else {
                    "/signin".to_owned()
                };
                Err(Redirect::to(&target).into_response())
            }
        }
    }
}

/// The `csrf` field of any form.
#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// A form post that passed the origin and CSRF checks, parsed as `T`
/// (whose fields should all be strings with defaults, so that a missing or
/// wrong value is the handler's to explain, field by field).
pub struct Posted<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Web> for Posted<T> {
    type Rejection = Response;

    async fn from_request(request: Request, web: &Web) -> Result<Self, Response> {
        let refused = |why: &str| {
            tracing::info!(why, "form post refused");
            page::forbidden_form()
        };
        let session = request
            .extensions()
            .get::<Session>()
            .cloned()
            .ok_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response())?;
        let headers = request.headers();
        // Sent by browsers on every post; absent from other clients.
        if let Some(origin) = headers.get(header::ORIGIN) {
            if origin.as_bytes() != web.0.origin.as_bytes() {
                return Err(refused("Origin is another site"));
            }
        }
        // Fetch metadata, where the browser sends it: only this origin's
        // own pages (or the shopper, typing) may post.
        if let Some(site) = headers.get("sec-fetch-site") {
            if !matches!(site.as_bytes(), b"same-origin" | b"none") {
                return Err(refused("Sec-Fetch-Site is another site"));
            }
        }
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(page::bad_request(
                "This address takes only the shop's own forms.",
            ));
        }
        let body = Bytes::from_request(request, web)
            .await
            .map_err(|_| page::bad_request("The form was too large."))?;
        let token = serde_urlencoded::from_bytes::<CsrfField>(&body)
            .map(|f| f.csrf)
            .unwrap_or_default();
        if token.is_empty() || !bool::from(token.as_bytes().ct_eq(session.csrf.as_bytes())) {
            return Err(refused("CSRF token missing or wrong"));
        }
        serde_urlencoded::from_bytes::<T>(&body)
            .map(Posted)
            .map_err(|_| {
                page::bad_request("The form was incomplete. Reload the page and try again.")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_reads_back_as_written() {
        let s = Session::signed_in(MerchantUserId::parse("alice").expect("id"));
        assert_eq!(Session::decode(&s.encode(), now_ms()), Some(s.clone()));
        let anon = Session::anonymous();
        assert_eq!(Session::decode(&anon.encode(), now_ms()), Some(anon));
    }

    #[test]
    fn an_old_sign_in_is_dropped_but_not_its_token() {
        let s = Session::signed_in(MerchantUserId::parse("alice").expect("id"));
        let later = Session::decode(&s.encode(), now_ms() + SIGNED_IN_FOR_MS + 1).expect("read");
        assert_eq!(later.user(), None);
        assert_eq!(later.csrf(), s.csrf());
    }

    #[test]
    fn other_formats_are_not_read() {
        assert_eq!(Session::decode("v=2&csrf=x", 0), None);
        assert_eq!(Session::decode("garbage", 0), None);
        assert_eq!(Session::decode("v=1&csrf=short", 0), None);
    }

    #[test]
    fn tokens_differ_per_session() {
        assert_ne!(Session::anonymous().csrf(), Session::anonymous().csrf());
    }
}
