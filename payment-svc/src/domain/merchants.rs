//! Registering merchants and their certificates, and deciding which
//! merchant (if any) a client certificate speaks for.
//!
//! A merchant is the NAME in its certificate's SAN URI
//! `urn:paybind:merchant:NAME` **and** a certificate registered for it by
//! fingerprint, in force, of a merchant that is enabled. The CA only
//! vouches for the chain: a second certificate it signs for the same name
//! is refused, a revoked one is refused, a disabled merchant is refused.
//! Changes reach every replica through the merchant revision, which each
//! one polls ([`MerchantDirectory::watch`]).
use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use paybind_shared::{
    clock::now_ms,
    ids::MerchantId,
    tls::{CertFingerprint, PeerCertificate},
};

use super::error::DomainError;
use crate::store::Store;

pub use super::model::{Merchant, MerchantCertificate, MerchantStatus};

/// How often each replica looks for merchant changes.
pub const REFRESH_EVERY: Duration = Duration::from_millis(250);

/// How long a replica trusts its cache after its last successful look: if
/// it cannot read the revision (its database link is down), it stops using
/// the cache rather than keep letting in a merchant that may be disabled.
/// An admin command waits this long (and a little) before it says a change
/// is in force everywhere.
pub const TRUSTED_FOR: Duration = Duration::from_millis(1000);

/// A certificate about to be registered: read from its PEM file, it must
/// name the merchant it is registered for.
pub fn certificate_for(
    merchant: &Merchant,
    peer: &PeerCertificate,
    now_ms: i64,
) -> anyhow::Result<MerchantCertificate> {
    match peer.merchant_name() {
        Some(name) if name == merchant.cert_identity => {}
        Some(name) => anyhow::bail!(
            "the certificate names merchant {name:?}, not {:?}",
            merchant.cert_identity
        ),
        None => anyhow::bail!(
            "the certificate has no SAN URI urn:paybind:merchant:{} (a subject CN alone names nobody)",
            merchant.cert_identity
        ),
    }
    if peer.not_after_ms <= now_ms {
        anyhow::bail!("the certificate has expired");
    }
    Ok(MerchantCertificate {
        fingerprint: peer.fingerprint,
        merchant_id: merchant.id.clone(),
        not_after_ms: peer.not_after_ms,
        added_ms: now_ms,
        revoked_ms: None,
    })
}

/// Registers a merchant with its first certificate, after validating both.
pub async fn register(
    store: &dyn Store,
    merchant: &Merchant,
    certificate: &PeerCertificate,
) -> anyhow::Result<MerchantCertificate> {
    merchant.validate()?;
    let now = now_ms();
    let registered = certificate_for(merchant, certificate, now)?;
    store.insert_merchant(merchant, &registered, now).await?;
    Ok(registered)
}

/// Registers the merchant unless one with its id already exists (dev seed);
/// an existing one gets `certificate` registered if it is not yet.
pub async fn ensure(
    store: &dyn Store,
    merchant: &Merchant,
    certificate: &PeerCertificate,
) -> anyhow::Result<bool> {
    let known = store.list_merchants().await?;
    let Some(existing) = known.into_iter().find(|m| m.id == merchant.id) else {
        register(store, merchant, certificate).await?;
        return Ok(true);
    };
    if store
        .certificate_holder(&certificate.fingerprint)
        .await?
        .is_none()
    {
        // A development folder whose certificate was reissued.
        rotate(store, &existing, certificate, Duration::ZERO).await?;
    }
    Ok(false)
}

/// Registers `certificate` for `merchant`; its other certificates stay in
/// force for `overlap` (zero: refused at once).
pub async fn rotate(
    store: &dyn Store,
    merchant: &Merchant,
    certificate: &PeerCertificate,
    overlap: Duration,
) -> anyhow::Result<MerchantCertificate> {
    let now = now_ms();
    let registered = certificate_for(merchant, certificate, now)?;
    let overlap_ms = i64::try_from(overlap.as_millis()).unwrap_or(i64::MAX);
    store
        .rotate_certificate(&registered, now.saturating_add(overlap_ms))
        .await?;
    Ok(registered)
}

/// Finds a merchant by id, for the admin commands.
pub async fn find(store: &dyn Store, id: &MerchantId) -> anyhow::Result<Merchant> {
    store
        .list_merchants()
        .await?
        .into_iter()
        .find(|m| &m.id == id)
        .ok_or_else(|| anyhow::anyhow!("no merchant {id}"))
}

/// A registered certificate with its merchant, as read at `read_at`.
struct Entry {
    merchant: Arc<Merchant>,
    certificate: MerchantCertificate,
    read_at: Instant,
}

/// Resolves client certificates to merchants, with a cache so the hot path
/// does not read the merchant on every call. The cache is dropped whenever
/// the merchant revision moves (see [`Self::watch`]); an entry is also
/// never older than `max_age`, in case the revision cannot be read.
pub struct MerchantDirectory {
    store: Arc<dyn Store>,
    cache: RwLock<Cache>,
    max_age: Duration,
}

#[derive(Default)]
struct Cache {
    revision: Option<i64>,
    /// When the revision was last read.
    polled_at: Option<Instant>,
    entries: HashMap<CertFingerprint, Arc<Entry>>,
}

impl Cache {
    fn trusted(&self) -> bool {
        self.polled_at.is_some_and(|at| at.elapsed() < TRUSTED_FOR)
    }
}

impl MerchantDirectory {
    pub fn new(store: Arc<dyn Store>, max_age: Duration) -> Self {
        Self {
            store,
            cache: RwLock::default(),
            max_age,
        }
    }

    /// The merchant `peer` speaks for, or why it speaks for none.
    pub async fn authenticate(
        &self,
        peer: Option<&PeerCertificate>,
    ) -> Result<Arc<Merchant>, DomainError> {
        let peer = peer.ok_or(DomainError::UnknownMerchant)?;
        let name = peer.merchant_name().ok_or(DomainError::UnknownMerchant)?;
        let entry = self.entry(&peer.fingerprint).await?;
        if entry.merchant.cert_identity != name {
            return Err(DomainError::UnknownMerchant);
        }
        if !entry.certificate.in_force(now_ms()) {
            return Err(DomainError::CertificateRevoked);
        }
        match entry.merchant.status {
            MerchantStatus::Enabled => Ok(entry.merchant.clone()),
            MerchantStatus::Disabled { .. } => Err(DomainError::MerchantDisabled),
        }
    }

    async fn entry(&self, fingerprint: &CertFingerprint) -> Result<Arc<Entry>, DomainError> {
        let revision = {
            let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = cache.entries.get(fingerprint) {
                if cache.trusted() && entry.read_at.elapsed() < self.max_age {
                    return Ok(entry.clone());
                }
            }
            cache.revision
        };
        let (merchant, certificate) = self
            .store
            .certificate_holder(fingerprint)
            .await?
            .ok_or(DomainError::UnknownMerchant)?;
        let entry = Arc::new(Entry {
            merchant: Arc::new(merchant),
            certificate,
            read_at: Instant::now(),
        });
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        // Kept only if no change was seen while it was being read: what was
        // read before a change must not outlive the change.
        if cache.revision == revision {
            cache.entries.insert(*fingerprint, entry.clone());
        }
        Ok(entry)
    }

    /// Reads the merchant revision every [`REFRESH_EVERY`] and drops the
    /// cache when it moved: a merchant disabled or a certificate revoked on
    /// any replica (or by the admin command) is refused here within that;
    /// without a successful read for [`TRUSTED_FOR`] the cache is not used.
    pub async fn watch(self: Arc<Self>) {
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.store.merchant_revision().await {
                Ok(revision) => self.saw_revision(revision),
                Err(e) => tracing::warn!(error = %e, "could not read the merchant revision"),
            }
        }
    }

    fn saw_revision(&self, revision: i64) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        cache.polled_at = Some(Instant::now());
        if cache.revision != Some(revision) {
            if cache.revision.is_some() {
                tracing::info!(
                    revision,
                    "merchants changed; certificates will be read again"
                );
            }
            cache.entries.clear();
            cache.revision = Some(revision);
        }
    }
}
