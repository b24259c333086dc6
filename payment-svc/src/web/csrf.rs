//! The page's forms carry a token bound to the session **and** to the
//! version of it the form was rendered from. A form posted without it, or
//! with one minted for another session, is refused; a form rendered before
//! the session moved on (a double click, the back button, a second tab) is
//! recognised as stale, and the shopper is shown the current step instead
//! of it being sent a second time. No cookie is needed: the page also works
//! framed by another site, where browsers withhold cookies.
use paybind_shared::ids::SessionId;
use subtle::ConstantTimeEq;

use crate::domain::vault::KeyedHasher;

/// What a posted token says about the form it came with.
#[derive(Debug, PartialEq, Eq)]
pub enum FormToken {
    /// Rendered from the session as it is now.
    Current,
    /// Rendered from an earlier version of this session.
    Stale,
    /// Missing, or not minted for this session.
    Forged,
}

pub struct CsrfTokens<'a> {
    key: &'a KeyedHasher,
}

impl<'a> CsrfTokens<'a> {
    pub fn new(key: &'a KeyedHasher) -> Self {
        Self { key }
    }

    pub fn mint(&self, session_id: &SessionId, version: i64) -> String {
        self.key.mac_hex(&[
            b"paybind/page/csrf/v1",
            session_id.as_str().as_bytes(),
            &version.to_be_bytes(),
        ])
    }

    /// Checks `posted` against every version of the session so far (a
    /// session moves through a few dozen versions at most).
    pub fn check(&self, session_id: &SessionId, version: i64, posted: Option<&str>) -> FormToken {
        let Some(posted) = posted.filter(|p| !p.is_empty()) else {
            return FormToken::Forged;
        };
        let matches =
            |v: i64| bool::from(self.mint(session_id, v).as_bytes().ct_eq(posted.as_bytes()));
        if matches(version) {
            FormToken::Current
        } else if (0..version).rev().take(256).any(matches) {
            FormToken::Stale
        } else {
            FormToken::Forged
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn key() -> KeyedHasher {
        let raw = SecretString::from("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
        KeyedHasher::new("test", &raw).expect("key")
    }

    #[test]
    fn tokens_are_bound_to_session_and_version() {
        let key = key();
        let tokens = CsrfTokens::new(&key);
        let a = SessionId::generate();
        let b = SessionId::generate();
        let t3 = tokens.mint(&a, 3);
        assert_eq!(tokens.check(&a, 3, Some(&t3)), FormToken::Current);
        assert_eq!(tokens.check(&a, 5, Some(&t3)), FormToken::Stale);
        assert_eq!(tokens.check(&b, 3, Some(&t3)), FormToken::Forged);
        assert_eq!(
            tokens.check(&a, 2, Some(&t3)),
            FormToken::Forged,
            "from the future"
        );
        assert_eq!(tokens.check(&a, 3, None), FormToken::Forged);
        assert_eq!(tokens.check(&a, 3, Some("")), FormToken::Forged);
        assert_eq!(tokens.check(&a, 3, Some("00")), FormToken::Forged);
    }
}
