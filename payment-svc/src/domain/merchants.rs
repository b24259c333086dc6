//! Registered merchants: who a client certificate belongs to, where its pages
//! may return, what it may do, and its default auth-free limits.
use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use paybind_shared::money::{Currency, Money};
use url::Url;

use super::{clock::now_ms, error::DomainError, fields};
use crate::store::{MerchantRow, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merchant {
    pub id: String,
    pub display_name: String,
    /// The subject CN of the merchant's client certificate.
    pub cert_identity: String,
    /// Origins allowed to frame the binding page and to receive its messages.
    pub allowed_origins: Vec<String>,
    /// URL prefixes a session's return URL must start with.
    pub return_urls: Vec<String>,
    /// May send card data itself (SubmitBindInfo / VerifyBind).
    pub direct_entry: bool,
    /// The currency it charges in; the limits are in it.
    pub currency: Currency,
    pub per_payment_limit: i64,
    pub daily_limit: i64,
}

impl Merchant {
    /// Checks a new registration: every field, so that a merchant that is
    /// stored is a merchant that works.
    pub fn validate(&self) -> anyhow::Result<()> {
        fields::identifier(&self.id, "merchant id")?;
        fields::identifier(&self.cert_identity, "certificate identity")?;
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
        Money::new(self.per_payment_limit, self.currency)
            .map_err(|e| anyhow::anyhow!("per-payment limit: {e}"))?;
        Money::new(self.daily_limit, self.currency)
            .map_err(|e| anyhow::anyhow!("daily limit: {e}"))?;
        if self.per_payment_limit > self.daily_limit {
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

    fn to_row(&self) -> anyhow::Result<MerchantRow> {
        Ok(MerchantRow {
            id: self.id.clone(),
            display_name: self.display_name.clone(),
            cert_identity: self.cert_identity.clone(),
            allowed_origins: serde_json::to_string(&self.allowed_origins)?,
            return_urls: serde_json::to_string(&self.return_urls)?,
            direct_entry: self.direct_entry,
            currency: self.currency.code().to_owned(),
            per_payment_limit: self.per_payment_limit,
            daily_limit: self.daily_limit,
            created_ms: now_ms(),
        })
    }
}

fn path_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix || path.starts_with(&format!("{prefix}/")) || prefix.is_empty()
}

impl TryFrom<MerchantRow> for Merchant {
    type Error = StoreError;

    fn try_from(row: MerchantRow) -> Result<Self, Self::Error> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("merchant {}: {what}", row.id));
        Ok(Self {
            allowed_origins: serde_json::from_str(&row.allowed_origins)
                .map_err(|_| corrupt("allowed_origins"))?,
            return_urls: serde_json::from_str(&row.return_urls)
                .map_err(|_| corrupt("return_urls"))?,
            currency: Currency::parse(&row.currency).map_err(|_| corrupt("currency"))?,
            id: row.id,
            display_name: row.display_name,
            cert_identity: row.cert_identity,
            direct_entry: row.direct_entry,
            per_payment_limit: row.per_payment_limit,
            daily_limit: row.daily_limit,
        })
    }
}

/// Registers a merchant after validating it.
pub async fn register(store: &dyn Store, merchant: &Merchant) -> anyhow::Result<()> {
    merchant.validate()?;
    store.insert_merchant(&merchant.to_row()?).await?;
    Ok(())
}

/// Registers the merchant unless one with its id already exists (dev seed).
pub async fn ensure(store: &dyn Store, merchant: &Merchant) -> anyhow::Result<bool> {
    let known = store.list_merchants().await?;
    if known.iter().any(|m| m.id == merchant.id) {
        return Ok(false);
    }
    register(store, merchant).await?;
    Ok(true)
}

/// Resolves client certificates to merchants, with a short cache so the hot
/// path does not read the merchant on every call.
pub struct MerchantDirectory {
    store: Arc<dyn Store>,
    cache: RwLock<HashMap<String, (Arc<Merchant>, Instant)>>,
    ttl: Duration,
}

impl MerchantDirectory {
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        Self {
            store,
            cache: RwLock::default(),
            ttl,
        }
    }

    pub async fn by_cert_identity(&self, identity: &str) -> Result<Arc<Merchant>, DomainError> {
        if let Some((merchant, at)) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(identity)
        {
            if at.elapsed() < self.ttl {
                return Ok(merchant.clone());
            }
        }
        let row = self
            .store
            .merchant_by_cert_identity(identity)
            .await?
            .ok_or(DomainError::UnknownMerchant)?;
        let merchant = Arc::new(Merchant::try_from(row)?);
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(identity.to_owned(), (merchant.clone(), Instant::now()));
        Ok(merchant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> Merchant {
        Merchant {
            id: "demo-shop".into(),
            display_name: "Demo Shop".into(),
            cert_identity: "demo-shop".into(),
            allowed_origins: vec!["https://shop.example".into()],
            return_urls: vec!["https://shop.example/bind/return".into()],
            direct_entry: true,
            currency: Currency::parse("CNY").expect("CNY"),
            per_payment_limit: 50_000,
            daily_limit: 200_000,
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
    fn validation_catches_bad_registrations() {
        assert!(shop().validate().is_ok());
        let mut m = shop();
        m.allowed_origins = vec!["https://shop.example/path".into()];
        assert!(m.validate().is_err());
        let mut m = shop();
        m.per_payment_limit = 300_000;
        assert!(m.validate().is_err());
        let mut m = shop();
        m.return_urls.clear();
        assert!(m.validate().is_err());
    }
}
