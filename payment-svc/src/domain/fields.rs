//! Parsers for the plain fields of requests: identifiers, keys, free text.
use super::error::Invalid;

fn invalid(message: String) -> Invalid {
    Invalid::new("INVALID_ARGUMENT", message)
}

/// A merchant's user id or order id: 1-64 characters of `[A-Za-z0-9._:@-]`.
pub fn identifier(raw: &str, what: &str) -> Result<String, Invalid> {
    if raw.is_empty() || raw.len() > 64 {
        return Err(invalid(format!("{what} must be 1 to 64 characters")));
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-_:@".contains(&b))
    {
        return Err(invalid(format!(
            "{what} may contain only letters, digits and . _ : @ -"
        )));
    }
    Ok(raw.to_owned())
}

/// An idempotency key: 1-128 printable ASCII characters.
pub fn idempotency_key(raw: &str) -> Result<String, Invalid> {
    if raw.is_empty() || raw.len() > 128 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "idempotency_key must be 1 to 128 printable ASCII characters".into(),
        ));
    }
    Ok(raw.to_owned())
}

/// Free text such as a description or reason: at most `max` characters, no
/// control characters; may be empty.
pub fn free_text(raw: &str, max: usize, what: &str) -> Result<String, Invalid> {
    let text = raw.trim();
    if text.chars().count() > max {
        return Err(invalid(format!("{what} must be at most {max} characters")));
    }
    if text.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(text.to_owned())
}

/// A hash of a request's fields, to tell a retry (same fields) from a reuse
/// of its idempotency key (different fields). Fields are length-prefixed.
pub fn request_hash(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(identifier("user-42@shop", "x").is_ok());
        assert!(identifier("", "x").is_err());
        assert!(identifier("has space", "x").is_err());
        assert!(identifier(&"a".repeat(65), "x").is_err());
    }

    #[test]
    fn keys_and_text() {
        assert!(idempotency_key("order-1/try-1").is_ok());
        assert!(idempotency_key("").is_err());
        assert!(idempotency_key("with space").is_err());
        assert_eq!(free_text("  hi ", 10, "d").expect("ok"), "hi");
        assert!(free_text("a\nb", 10, "d").is_err());
        assert!(free_text(&"é".repeat(11), 10, "d").is_err());
    }

    #[test]
    fn request_hash_separates_fields() {
        assert_ne!(request_hash(&["ab", "c"]), request_hash(&["a", "bc"]));
        assert_eq!(request_hash(&["a"]), request_hash(&["a"]));
    }
}
