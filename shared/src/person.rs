//! What both services know of a person: a name and a mainland China mobile
//! number, parsed the same way at the shop (its users) and at the payment
//! institution (the shopper on the binding page).
use crate::fields::{is_bidi_control, Invalid};

/// A person's name as on their ID: 1-100 characters, no control or
/// bidirectional formatting characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullName(String);

impl FullName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(Invalid::argument("full name is required"));
        }
        if name.chars().count() > 100 {
            return Err(Invalid::argument(
                "full name must be at most 100 characters",
            ));
        }
        if name.chars().any(|c| c.is_control() || is_bidi_control(c)) {
            return Err(Invalid::argument(
                "full name must not contain control or bidirectional formatting characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name read back from a service's own database (parsed when written).
    pub fn from_stored(name: String) -> Self {
        Self(name)
    }
}

/// A mainland China mobile number, kept as E.164: `+86` and 11 digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    /// Accepts `13800138000`, `+86 138 0013 8000`, `0086-13800138000`.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let compact: String = raw
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
            .collect();
        let national = compact
            .strip_prefix("+86")
            .or_else(|| compact.strip_prefix("0086"))
            .unwrap_or(&compact);
        let b = national.as_bytes();
        if b.len() != 11
            || !b.iter().all(u8::is_ascii_digit)
            || b[0] != b'1'
            || !(b'3'..=b'9').contains(&b[1])
        {
            return Err(Invalid::new(
                "INVALID_PHONE",
                "phone must be a mainland China mobile number, e.g. +8613800138000",
            ));
        }
        Ok(Self(format!("+86{national}")))
    }

    /// `+8613800138000`.
    pub fn e164(&self) -> &str {
        &self.0
    }

    /// `+86 138****8000`: what the shopper and merchant are shown.
    pub fn masked(&self) -> String {
        let n = self.0.get(3..).unwrap_or_default();
        match (n.get(..3), n.get(7..)) {
            (Some(head), Some(tail)) => format!("+86 {head}****{tail}"),
            _ => "+86 ****".to_owned(),
        }
    }

    /// A phone read back from a service's own database (parsed when written).
    pub fn from_stored(e164: String) -> Self {
        Self(e164)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn phones_are_normalised_and_masked() {
        for raw in ["13800138000", "+86 138 0013 8000", "0086-13800138000"] {
            let p = Phone::parse(raw).expect(raw);
            assert_eq!(p.e164(), "+8613800138000");
            assert_eq!(p.masked(), "+86 138****8000");
        }
        for bad in [
            "",
            "12800138000",
            "1380013800",
            "+1 415 555 0100",
            "138001380001",
            "555-1234",
        ] {
            assert_eq!(Phone::parse(bad).expect_err(bad).reason, "INVALID_PHONE");
        }
    }

    #[test]
    fn names() {
        assert_eq!(FullName::parse("  张三 ").expect("ok").as_str(), "张三");
        assert!(FullName::parse("   ").is_err());
        assert!(FullName::parse(&"a".repeat(101)).is_err());
        assert!(FullName::parse("a\u{0}b").is_err());
        assert!(
            FullName::parse("Zhang\u{202E}naS").is_err(),
            "right-to-left override"
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics(raw in "\\PC{0,30}") {
            let _ = Phone::parse(&raw);
            let _ = FullName::parse(&raw);
            let _ = Phone::from_stored(raw).masked();
        }
    }
}
