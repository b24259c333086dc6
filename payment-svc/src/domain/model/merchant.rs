//! A merchant registered at payment-svc: who its client certificates are,
//! whether it is let in, where its pages may return, what it may do, and
//! its default auth-free limits.
use paybind_shared::{
    fields::identifier,
    ids::MerchantId,
    money::{Currency, Money},
    tls::CertFingerprint,
};
use url::Url;

use super::binding::Limits;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merchant {
    pub id: MerchantId,
    pub display_name: String,
    /// The NAME its client certificates carry as SAN URI
    /// `urn:paybind:merchant:NAME`; which certificates count is
    /// [`MerchantCertificate`]'s business.
    pub cert_identity: String,
    /// Whether the payment institution lets it in at all.
    pub status: MerchantStatus,
    /// Origins allowed to frame the binding page and to receive its messages.
    pub allowed_origins: Vec<String>,
    /// URL prefixes a session's return URL must start with.
    pub return_urls: Vec<String>,
    /// May send card data itself (SubmitBindInfo / VerifyBind).
    pub direct_entry: bool,
    /// The currency it charges in; the limits are in it.
    pub currency: Currency,
    /// The auth-free limits each new binding gets.
    pub limits: Limits,
    /// The most a BindAndPay may charge: a first payment, made on a card
    /// whose holder the issuer verified a moment before.
    pub bind_and_pay_limit: Money,
}

/// Whether the payment institution lets a merchant in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MerchantStatus {
    Enabled,
    /// Refused on every replica from `since_ms` on, until enabled again.
    Disabled {
        since_ms: i64,
    },
}

/// A client certificate registered for a merchant, pinned by fingerprint:
/// the CA vouches for the chain, this says which certificates speak for
/// the merchant, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantCertificate {
    pub fingerprint: CertFingerprint,
    pub merchant_id: MerchantId,
    /// The certificate's own expiry (rustls refuses it after that anyway).
    pub not_after_ms: i64,
    pub added_ms: i64,
    /// Refused from this instant on: revoked, or the end of a rotation's
    /// overlap.
    pub revoked_ms: Option<i64>,
}

impl MerchantCertificate {
    pub fn in_force(&self, now_ms: i64) -> bool {
        self.revoked_ms.is_none_or(|revoked| now_ms < revoked)
    }
}

impl Merchant {
    /// Checks a new registration: every field, so that a merchant that is
    /// stored is a merchant that works.
    pub fn validate(&self) -> anyhow::Result<()> {
        identifier(self.id.as_str(), "merchant id")?;
        identifier(&self.cert_identity, "certificate identity")?;
        if self.display_name.trim().is_empty() || self.display_name.chars().count() > 100 {
            anyhow::bail!("display name must be 1 to 100 characters");
        }
        for origin in &self.allowed_origins {
            let url = Url::parse(origin).map_err(|e| anyhow::anyhow!("origin {origin:?}: {e}"))?;
            if url.origin().ascii_serialization() != *origin {
                anyhow::bail!("origin {origin:?} must be scheme://host[:port] with no path");
            }
        }
        if self.return_urls.is_empty() {
            anyhow::bail!("at least one return URL is required");
        }
        for prefix in &self.return_urls {
            let url =
                Url::parse(prefix).map_err(|e| anyhow::anyhow!("return URL {prefix:?}: {e}"))?;
            if !matches!(url.scheme(), "https" | "http") {
                anyhow::bail!("return URL {prefix:?} must be http(s)");
            }
        }
        if self.limits.per_payment.currency() != self.currency
            || self.limits.daily.currency() != self.currency
        {
            anyhow::bail!("the limits must be in the merchant's currency");
        }
        if self.bind_and_pay_limit.currency() != self.currency {
            anyhow::bail!("the BindAndPay limit must be in the merchant's currency");
        }
        if self.limits.per_payment.amount_minor() > self.limits.daily.amount_minor() {
            anyhow::bail!("the per-payment limit cannot exceed the daily limit");
        }
        Ok(())
    }

    /// Whether `return_url` is on one of the registered return URLs: same
    /// scheme, host and port, and a path under the registered one.
    pub fn allows_return_url(&self, return_url: &str) -> bool {
        let Ok(candidate) = Url::parse(return_url) else {
            return false;
        };
        self.return_urls.iter().any(|prefix| {
            let Ok(prefix) = Url::parse(prefix) else {
                return false;
            };
            candidate.origin() == prefix.origin()
                && candidate.username().is_empty()
                && candidate.password().is_none()
                && path_under(candidate.path(), prefix.path())
        })
    }
}

impl Merchant {
    /// The one origin a binding page of this merchant talks to with
    /// `postMessage`: the return URL's origin when it is registered, else
    /// the first registered origin; none when the merchant has none.
    pub fn page_origin(&self, return_url: &str) -> Option<&str> {
        let wanted = Url::parse(return_url)
            .ok()
            .map(|u| u.origin().ascii_serialization());
        self.allowed_origins
            .iter()
            .find(|o| Some(o.as_str()) == wanted.as_deref())
            .or_else(|| self.allowed_origins.first())
            .map(String::as_str)
    }
}

fn path_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix || path.starts_with(&format!("{prefix}/")) || prefix.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cny() -> Currency {
        Currency::parse("CNY").expect("CNY")
    }

    fn shop() -> Merchant {
        Merchant {
            id: MerchantId::parse("demo-shop").expect("id"),
            display_name: "Demo Shop".into(),
            cert_identity: "demo-shop".into(),
            status: MerchantStatus::Enabled,
            allowed_origins: vec!["https://shop.example".into()],
            return_urls: vec!["https://shop.example/bind/return".into()],
            direct_entry: true,
            currency: cny(),
            limits: Limits {
                per_payment: Money::new(50_000, cny()).expect("limit"),
                daily: Money::new(200_000, cny()).expect("limit"),
            },
            bind_and_pay_limit: Money::new(100_000, cny()).expect("limit"),
        }
    }

    #[test]
    fn return_urls_must_be_under_a_registered_prefix() {
        let m = shop();
        assert!(m.allows_return_url("https://shop.example/bind/return"));
        assert!(m.allows_return_url("https://shop.example/bind/return/x?y=1"));
        for bad in [
            "https://shop.example/bind/returnx",
            "https://shop.example/other",
            "https://shop.example.evil.com/bind/return",
            "http://shop.example/bind/return",
            "https://user@shop.example/bind/return",
            "https://shop.example:8443/bind/return",
            "javascript:alert(1)",
            "",
        ] {
            assert!(!m.allows_return_url(bad), "{bad}");
        }
    }

    #[test]
    fn pages_talk_to_the_return_urls_registered_origin_only() {
        let mut m = shop();
        m.allowed_origins = vec!["https://a.example".into(), "https://shop.example".into()];
        assert_eq!(
            m.page_origin("https://shop.example/bind/return?x=1"),
            Some("https://shop.example")
        );
        assert_eq!(
            m.page_origin("https://evil.example/"),
            Some("https://a.example")
        );
        m.allowed_origins.clear();
        assert_eq!(m.page_origin("https://shop.example/bind/return"), None);
    }

    #[test]
    fn validation_catches_bad_registrations() {
        assert!(shop().validate().is_ok());
        let mut m = shop();
        m.allowed_origins = vec!["https://shop.example/path".into()];
        assert!(m.validate().is_err());
        let mut m = shop();
        m.limits.per_payment = Money::new(300_000, cny()).expect("limit");
        assert!(m.validate().is_err());
        let mut m = shop();
        m.return_urls.clear();
        assert!(m.validate().is_err());
        let mut m = shop();
        m.bind_and_pay_limit = Money::new(100, Currency::parse("USD").expect("USD")).expect("x");
        assert!(m.validate().is_err(), "in another currency");
    }
}
