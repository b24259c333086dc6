//! Parsing request fields, the same way in both services: what a rejected
//! value looks like ([`Invalid`], [`Rejected`]), the plain text rules
//! (identifiers, free text), and collecting every rejected field of a request
//! at once ([`AllOk`]), so that a client learns all it must fix in one answer.
use std::fmt;

/// Why one value was refused: a machine-readable reason (one of the
/// contract's `ErrorReason` names) and a message for a human. The request
/// field is attached by the caller, which knows the path ([`Invalid::at`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub reason: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// The generic reason, for fields without one of their own.
    pub fn argument(message: impl Into<String>) -> Self {
        Self::new("INVALID_ARGUMENT", message)
    }

    /// Names the request field at fault, e.g. `card.number`.
    pub fn at(self, field: &'static str) -> Rejected {
        Rejected(vec![Violation {
            field,
            reason: self.reason,
            message: self.message,
        }])
    }
}

/// One rejected request field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field's path in the request, e.g. `payment.amount.currency`.
    pub field: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// Every rejected field of one request; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected(Vec<Violation>);

impl Rejected {
    pub fn violations(&self) -> &[Violation] {
        &self.0
    }

    /// The first violation: its reason is the request's reason.
    pub fn first(&self) -> &Violation {
        // Built only by `Invalid::at` and merged by `AllOk`: never empty.
        &self.0[0]
    }

    fn merge(mut self, other: Rejected) -> Self {
        self.0.extend(other.0);
        self
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => f.write_str(&one.message),
            many => {
                write!(f, "{} fields are invalid: ", many.len())?;
                for (i, v) in many.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "; " };
                    write!(f, "{sep}{}: {}", v.field, v.message)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Rejected {}

/// Names the field of a parse result: `MerchantUserId::parse(raw).at("merchant_user_id")`.
pub trait At<T> {
    fn at(self, field: &'static str) -> Result<T, Rejected>;
}

impl<T> At<T> for Result<T, Invalid> {
    fn at(self, field: &'static str) -> Result<T, Rejected> {
        self.map_err(|e| e.at(field))
    }
}

/// Combines the parse results of a request's fields: all the values, or
/// every rejection among them (not just the first).
pub trait AllOk {
    type Output;
    fn all_ok(self) -> Result<Self::Output, Rejected>;
}

macro_rules! all_ok_for_tuples {
    ($($name:ident),+) => {
        impl<$($name),+> AllOk for ($(Result<$name, Rejected>,)+) {
            type Output = ($($name,)+);

            #[allow(non_snake_case)]
            fn all_ok(self) -> Result<Self::Output, Rejected> {
                let ($($name,)+) = self;
                let mut rejected: Option<Rejected> = None;
                $(
                    let $name = match $name {
                        Ok(value) => Some(value),
                        Err(e) => {
                            rejected = Some(match rejected.take() {
                                Some(r) => r.merge(e),
                                None => e,
                            });
                            None
                        }
                    };
                )+
                match ($($name,)+) {
                    ($(Some($name),)+) => Ok(($($name,)+)),
                    // At least one is None, and each None recorded its rejection.
                    _ => Err(rejected.unwrap_or_else(|| Invalid::argument("invalid request").at("request"))),
                }
            }
        }
    };
}

all_ok_for_tuples!(A, B);
all_ok_for_tuples!(A, B, C);
all_ok_for_tuples!(A, B, C, D);
all_ok_for_tuples!(A, B, C, D, E);
all_ok_for_tuples!(A, B, C, D, E, F);
all_ok_for_tuples!(A, B, C, D, E, F, G);
all_ok_for_tuples!(A, B, C, D, E, F, G, H);

/// Unicode's bidirectional formatting characters: they make text display in
/// another order than it is stored (U+202E shows "moc.evil" as "live.com"),
/// so a name or description could show something else than it says.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Characters no text field accepts: control characters and bidirectional
/// formatting characters.
fn is_forbidden_in_text(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// An identifier chosen by a client: 1-64 characters of `[A-Za-z0-9._:@-]`.
pub fn identifier(raw: &str, what: &str) -> Result<String, Invalid> {
    if raw.is_empty() || raw.len() > 64 {
        return Err(Invalid::argument(format!(
            "{what} must be 1 to 64 characters"
        )));
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-_:@".contains(&b))
    {
        return Err(Invalid::argument(format!(
            "{what} may contain only letters, digits and . _ : @ -"
        )));
    }
    Ok(raw.to_owned())
}

/// Free text such as a description or a reason: trimmed, at most `max`
/// characters, no control or bidirectional formatting characters; may be
/// empty.
pub fn free_text(raw: &str, max: usize, what: &str) -> Result<String, Invalid> {
    let text = raw.trim();
    if text.chars().count() > max {
        return Err(Invalid::argument(format!(
            "{what} must be at most {max} characters"
        )));
    }
    if text.chars().any(is_forbidden_in_text) {
        return Err(Invalid::argument(format!(
            "{what} must not contain control or bidirectional formatting characters"
        )));
    }
    Ok(text.to_owned())
}

/// Free text that must not be empty.
pub fn required_text(raw: &str, max: usize, what: &str) -> Result<String, Invalid> {
    let text = free_text(raw, max, what)?;
    if text.is_empty() {
        return Err(Invalid::argument(format!("{what} is required")));
    }
    Ok(text)
}

/// A hash of a request's fields, to tell a retry (same fields) from a reuse
/// of its idempotency key (different fields). Fields are length-prefixed, so
/// ("ab", "c") and ("a", "bc") differ.
pub fn request_hash(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Where a listing continues: the (creation time, id) of the last item of
/// the previous page, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub created_ms: i64,
    pub id: String,
}

impl PageCursor {
    /// The opaque `next_page_token` a client passes back.
    pub fn encode(&self) -> String {
        use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.created_ms, self.id))
    }

    /// A `page_token` from a client: empty is the first page.
    pub fn decode(token: &str) -> Result<Option<Self>, Invalid> {
        use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
        if token.is_empty() {
            return Ok(None);
        }
        let parsed = URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| {
                let (ms, id) = text.split_once(':')?;
                Some(Self {
                    created_ms: ms.parse().ok()?,
                    id: id.to_owned(),
                })
            });
        parsed
            .map(Some)
            .ok_or_else(|| Invalid::argument("page_token is not one this service issued"))
    }
}

/// A `page_size` from a client: 1-100, and 0 means 20.
pub fn page_size(raw: i32) -> Result<i64, Invalid> {
    match raw {
        0 => Ok(20),
        1..=100 => Ok(i64::from(raw)),
        _ => Err(Invalid::argument("page_size must be 0 to 100")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn identifiers() {
        assert!(identifier("user-42@shop", "x").is_ok());
        assert!(identifier("", "x").is_err());
        assert!(identifier("has space", "x").is_err());
        assert!(identifier(&"a".repeat(65), "x").is_err());
    }

    #[test]
    fn text_refuses_control_and_bidi_characters() {
        assert_eq!(free_text("  hi ", 10, "d").expect("ok"), "hi");
        assert!(free_text("a\nb", 10, "d").is_err());
        assert!(free_text(&"é".repeat(11), 10, "d").is_err());
        for bidi in ['\u{202E}', '\u{2066}', '\u{200F}', '\u{061C}'] {
            assert!(
                free_text(&format!("ab{bidi}c"), 10, "d").is_err(),
                "{bidi:?}"
            );
        }
        assert!(required_text("  ", 10, "d").is_err());
    }

    #[test]
    fn request_hash_separates_fields() {
        assert_ne!(request_hash(&["ab", "c"]), request_hash(&["a", "bc"]));
        assert_eq!(request_hash(&["a"]), request_hash(&["a"]));
    }

    #[test]
    fn page_cursors_round_trip_and_refuse_garbage() {
        let c = PageCursor {
            created_ms: 123,
            id: "bnd_abc".into(),
        };
        assert_eq!(PageCursor::decode(&c.encode()), Ok(Some(c)));
        assert_eq!(PageCursor::decode(""), Ok(None));
        assert!(PageCursor::decode("%%%").is_err());
        assert!(PageCursor::decode("bm9jb2xvbg").is_err(), "no colon");
    }

    #[test]
    fn all_ok_reports_every_rejected_field() {
        let ok: Result<u8, Rejected> = Ok(1);
        let bad_a = Err(Invalid::new("A", "a is bad").at("a"));
        let bad_b: Result<u8, Rejected> = Err(Invalid::new("B", "b is bad").at("b"));
        let err = (bad_a.clone().map(|()| 0u8), ok.clone(), bad_b)
            .all_ok()
            .expect_err("two rejected");
        let fields: Vec<_> = err.violations().iter().map(|v| v.field).collect();
        assert_eq!(fields, ["a", "b"]);
        assert_eq!(err.first().reason, "A");
        assert_eq!(
            err.to_string(),
            "2 fields are invalid: a: a is bad; b: b is bad"
        );
        assert_eq!((ok.clone(), ok).all_ok(), Ok((1, 1)));
    }

    proptest! {
        #[test]
        fn text_parsers_never_panic(raw in "\\PC{0,80}") {
            let _ = identifier(&raw, "x");
            let _ = free_text(&raw, 20, "x");
            let _ = PageCursor::decode(&raw);
        }
    }
}
