//! Identifiers as types: a merchant id cannot be passed where a user id is
//! expected, and each is parsed once, where it enters a service.
//!
//! Ids a service makes itself are a readable prefix and 128 random bits
//! (`pay_3f2a…`); ids a client chooses (users, orders) follow the identifier
//! rule of the contract. The binding token is a secret and prints masked.
use std::fmt;

use crate::fields::{identifier, Invalid};

/// A new random identifier with `prefix`, e.g. `new_id("pay")`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(rand::random::<[u8; 16]>()))
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type)]
        #[sqlx(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses a value from a request: 1-64 characters of
            /// `[A-Za-z0-9._:@-]`.
            pub fn parse(raw: &str) -> Result<Self, Invalid> {
                identifier(raw, $what).map(Self)
            }

            /// A value read back from the service's own database, or made by
            /// the service itself: not parsed again.
            pub fn from_stored(value: String) -> Self {
                Self(value)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
    ($(#[$doc:meta])* $name:ident, $what:literal, prefix = $prefix:literal) => {
        id_type!($(#[$doc])* $name, $what);

        impl $name {
            /// A new random id.
            pub fn generate() -> Self {
                Self(new_id($prefix))
            }
        }
    };
}

id_type!(
    /// A merchant registered at payment-svc.
    MerchantId,
    "the merchant id"
);
id_type!(
    /// The merchant's own id of its user (the shop's user id).
    MerchantUserId,
    "the user id"
);
id_type!(
    /// The merchant's order id (the shop's order id).
    OrderId,
    "the order id",
    prefix = "ord"
);
id_type!(
    /// A bind session at payment-svc.
    SessionId,
    "the session id",
    prefix = "bs"
);
id_type!(
    /// A payment at payment-svc.
    PaymentId,
    "the payment id",
    prefix = "pay"
);
id_type!(
    /// A refund at payment-svc.
    RefundId,
    "the refund id",
    prefix = "rfd"
);
id_type!(
    /// An event of payment-svc's feed.
    EventId,
    "the event id",
    prefix = "evt"
);
id_type!(
    /// A binding at payment-svc: `bnd_` and 128 random bits, which its token
    /// carries.
    BindingId,
    "the binding id"
);

impl BindingId {
    /// The id whose random part is `raw`.
    pub fn from_raw(raw: &[u8; 16]) -> Self {
        Self(format!("bnd_{}", hex::encode(raw)))
    }

    /// The random part, if this is a well-formed binding id.
    pub fn raw(&self) -> Option<[u8; 16]> {
        let hex_part = self.0.strip_prefix("bnd_")?;
        hex::decode(hex_part).ok()?.try_into().ok()
    }
}

/// A client's idempotency key: 1-128 characters, no control characters. The
/// same key with the same request is a retry; with another request, a reuse.
#[derive(Debug, Clone, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let chars = raw.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS {
            return Err(Invalid::argument(
                "idempotency_key must be 1 to 128 characters",
            ));
        }
        if raw.chars().any(char::is_control) {
            return Err(Invalid::argument(
                "idempotency_key must not contain control characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A key derived by the service from its own ids (e.g. `order:ord_…`).
    pub fn derived(value: String) -> Self {
        Self(value)
    }

    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A binding token: the merchant's secret for paying with a binding. Its
/// `Debug` and `Display` show only its prefix; [`BindingToken::expose`] is
/// for the wire and the merchant's own database.
#[derive(Clone, PartialEq, Eq)]
pub struct BindingToken(String);

impl BindingToken {
    /// A token as received: it is checked cryptographically by payment-svc,
    /// so here only its presence and size.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.is_empty() {
            return Err(Invalid::argument("binding_token is required"));
        }
        if raw.len() > 256 {
            return Err(Invalid::argument("binding_token is not a paybind token"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A token made by payment-svc, or read back from the shop's database.
    pub fn from_trusted(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BindingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BindingToken(pbt_****)")
    }
}

impl fmt::Display for BindingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pbt_****")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_unique() {
        let a = PaymentId::generate();
        let b = PaymentId::generate();
        assert!(a.as_str().starts_with("pay_"));
        assert_eq!(a.as_str().len(), 4 + 32);
        assert_ne!(a, b);
    }

    #[test]
    fn binding_ids_carry_their_raw_bits() {
        let raw = [7u8; 16];
        let id = BindingId::from_raw(&raw);
        assert_eq!(id.raw(), Some(raw));
        assert_eq!(BindingId::from_stored("bnd_xyz".into()).raw(), None);
    }

    #[test]
    fn idempotency_keys_are_any_characters_but_controls() {
        assert!(IdempotencyKey::parse("order-1/try-1").is_ok());
        assert!(IdempotencyKey::parse("with space").is_ok());
        assert!(IdempotencyKey::parse("订单-1").is_ok());
        assert!(IdempotencyKey::parse(&"é".repeat(128)).is_ok());
        assert!(IdempotencyKey::parse(&"é".repeat(129)).is_err());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("a\0b").is_err());
        assert!(IdempotencyKey::parse("a\nb").is_err());
    }

    #[test]
    fn tokens_never_print() {
        let t = BindingToken::parse("pbt_secretsecret").expect("token");
        assert!(!format!("{t:?} {t}").contains("secret"));
        assert_eq!(t.expose(), "pbt_secretsecret");
    }
}
