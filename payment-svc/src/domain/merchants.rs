//! Registering merchants, and finding the merchant a client certificate
//! belongs to.
use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use paybind_shared::clock::now_ms;

use super::error::DomainError;
use crate::store::Store;

pub use super::model::Merchant;

/// Registers a merchant after validating it.
pub async fn register(store: &dyn Store, merchant: &Merchant) -> anyhow::Result<()> {
    merchant.validate()?;
    store.insert_merchant(merchant, now_ms()).await?;
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
        let merchant = Arc::new(
            self.store
                .merchant_by_cert_identity(identity)
                .await?
                .ok_or(DomainError::UnknownMerchant)?,
        );
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(identity.to_owned(), (merchant.clone(), Instant::now()));
        Ok(merchant)
    }
}
