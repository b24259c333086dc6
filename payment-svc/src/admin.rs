//! `payment-svc merchant …`: the payment institution's operators register
//! merchants and their certificates, rotate and revoke certificates, and
//! disable a merchant. Every change is one transaction that moves the
//! merchant revision; each command returns once every running replica has
//! seen it, or stopped trusting its cache (`merchants::TRUSTED_FOR`).
use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Subcommand;
use paybind_shared::{
    clock::now_ms,
    config::{require_https, Environment},
    ids::{BindingId, MerchantId},
    money::{Currency, Money},
    tls::{CertFingerprint, PeerCertificate},
};

use crate::{
    domain::{
        deliveries::NotifyEndpoint,
        events::RevokedBy,
        merchants::{self, Merchant, MerchantStatus, TRUSTED_FOR},
        model::Limits,
    },
    store::Store,
};

#[derive(Subcommand)]
pub enum MerchantCommand {
    /// Register a merchant with its client certificate.
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// The merchant's client certificate (PEM). It must carry the SAN
        /// URI urn:paybind:merchant:NAME; its fingerprint is registered.
        #[arg(long)]
        cert: PathBuf,
        /// Origin allowed to embed the binding page (repeatable).
        #[arg(long = "origin")]
        origins: Vec<String>,
        /// Return URL prefix (repeatable, at least one).
        #[arg(long = "return-url", required = true)]
        return_urls: Vec<String>,
        /// Allow direct entry (the merchant sends card data itself).
        #[arg(long)]
        direct_entry: bool,
        #[arg(long, default_value = "CNY")]
        currency: String,
        /// Auth-free limit per payment, minor units.
        #[arg(long, default_value_t = 50_000)]
        per_payment: i64,
        /// Auth-free limit per day, minor units.
        #[arg(long, default_value_t = 200_000)]
        per_day: i64,
        /// The most a BindAndPay (a first payment) may charge, minor units;
        /// the per-payment limit if not given.
        #[arg(long)]
        bind_and_pay_limit: Option<i64>,
    },
    /// List merchants, their status and certificates.
    List,
    /// Refuse every call of a merchant, on every replica, until enabled.
    Disable { id: String },
    /// Let a disabled merchant in again.
    Enable { id: String },
    /// Register a new certificate for a merchant; its other certificates
    /// are refused at once, or after --overlap-secs.
    RotateCert {
        id: String,
        /// The new client certificate (PEM), naming the same merchant.
        #[arg(long)]
        cert: PathBuf,
        /// How long the previous certificates stay valid, so the merchant
        /// can roll the new one out; 0 (the default) refuses them at once.
        #[arg(long, default_value_t = 0)]
        overlap_secs: u64,
    },
    /// Push the merchant's events to its NotificationService at URL
    /// (https://host:port), called with payment-svc's client certificate.
    /// Events that happen from then on are pushed (with retries); earlier
    /// ones stay readable with ListEvents.
    SetNotify {
        id: String,
        #[arg(long)]
        url: String,
        /// The name its server certificate carries; the URL's host if not
        /// given.
        #[arg(long)]
        server_name: Option<String>,
    },
    /// Stop pushing the merchant's events (they stay readable with
    /// ListEvents; pending deliveries fail with NO_ENDPOINT).
    ClearNotify { id: String },
    /// End one of the merchant's bindings as the payment institution (a
    /// card reported stolen, a complaint): its token pays no more at once,
    /// and the merchant is told (BINDING_REVOKED, revoked_by OPERATOR).
    RevokeBinding {
        id: String,
        /// The binding's id (`bnd_…`), as ListBindings and the events name it.
        binding_id: String,
        /// Why, as the merchant will read it.
        #[arg(long)]
        reason: String,
    },
    /// Refuse one certificate at once: by its SHA-256 fingerprint (as
    /// `merchant list` or `openssl x509 -noout -fingerprint -sha256` print
    /// it), or by the certificate file.
    RevokeCert {
        #[arg(required_unless_present = "cert", conflicts_with = "cert")]
        fingerprint: Option<String>,
        #[arg(long)]
        cert: Option<PathBuf>,
    },
}

/// Runs one admin command against `store`, for a payment-svc configured
/// for `environment` (sandbox and production register only https pages).
pub async fn run(
    command: MerchantCommand,
    store: &dyn Store,
    environment: Environment,
) -> anyhow::Result<()> {
    match command {
        MerchantCommand::Add {
            id,
            name,
            cert,
            origins,
            return_urls,
            direct_entry,
            currency,
            per_payment,
            per_day,
            bind_and_pay_limit,
        } => {
            let peer = PeerCertificate::from_pem_file(&cert)?;
            let currency = Currency::parse(&currency).context("--currency")?;
            let merchant = Merchant {
                id: MerchantId::parse(&id).context("--id")?,
                display_name: name,
                cert_identity: peer
                    .merchant_name()
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "{}: no SAN URI urn:paybind:merchant:NAME names the merchant",
                            cert.display()
                        )
                    })?
                    .to_owned(),
                status: MerchantStatus::Enabled,
                allowed_origins: origins,
                return_urls,
                direct_entry,
                currency,
                limits: Limits {
                    per_payment: Money::new(per_payment, currency).context("--per-payment")?,
                    daily: Money::new(per_day, currency).context("--per-day")?,
                },
                bind_and_pay_limit: Money::new(bind_and_pay_limit.unwrap_or(per_payment), currency)
                    .context("--bind-and-pay-limit")?,
            };
            for url in merchant.return_urls.iter().chain(&merchant.allowed_origins) {
                require_https(environment, "--return-url / --origin", url)?;
            }
            let registered = merchants::register(store, &merchant, &peer).await?;
            println!(
                "registered merchant {} (certificate urn:paybind:merchant:{}, SHA-256 {})",
                merchant.id, merchant.cert_identity, registered.fingerprint
            );
        }
        MerchantCommand::List => {
            let now = now_ms();
            for m in store.list_merchants().await? {
                let status = match m.status {
                    MerchantStatus::Enabled => "enabled",
                    MerchantStatus::Disabled { .. } => "DISABLED",
                };
                println!(
                    "{}\t{}\t{status}\tcert name={}\tdirect_entry={}\tcurrency={}\tauth-free: {} per payment, {} per day\tBindAndPay up to {}",
                    m.id,
                    m.display_name,
                    m.cert_identity,
                    m.direct_entry,
                    m.currency,
                    m.limits.per_payment,
                    m.limits.daily,
                    m.bind_and_pay_limit
                );
                match store.merchant_endpoint(&m.id).await? {
                    Some(e) => println!(
                        "\tnotifications pushed to {} (server name {})",
                        e.url, e.server_name
                    ),
                    None => println!("\tnotifications not pushed (no endpoint)"),
                }
                for c in store.merchant_certificates(&m.id).await? {
                    let state = match c.revoked_ms {
                        None => "in force".to_owned(),
                        Some(at) if at > now => {
                            format!("in force for {} s more", (at - now) / 1000)
                        }
                        Some(_) => "revoked".to_owned(),
                    };
                    println!("\tcertificate SHA-256 {}\t{state}", c.fingerprint);
                }
            }
        }
        MerchantCommand::Disable { id } => {
            let status = MerchantStatus::Disabled { since_ms: now_ms() };
            set_status(store, &id, status).await?;
            in_force_everywhere().await;
            println!("merchant {id} is disabled: every replica refuses it");
        }
        MerchantCommand::Enable { id } => {
            set_status(store, &id, MerchantStatus::Enabled).await?;
            in_force_everywhere().await;
            println!("merchant {id} is enabled");
        }
        MerchantCommand::RotateCert {
            id,
            cert,
            overlap_secs,
        } => {
            let merchant = merchants::find(store, &MerchantId::parse(&id).context("id")?).await?;
            let peer = PeerCertificate::from_pem_file(&cert)?;
            let overlap = Duration::from_secs(overlap_secs);
            let registered = merchants::rotate(store, &merchant, &peer, overlap).await?;
            in_force_everywhere().await;
            println!(
                "merchant {id}: certificate SHA-256 {} registered; the previous ones are {}",
                registered.fingerprint,
                if overlap_secs == 0 {
                    "refused from now on".to_owned()
                } else {
                    format!("refused in {overlap_secs} s")
                }
            );
        }
        MerchantCommand::SetNotify {
            id,
            url,
            server_name,
        } => {
            let merchant = merchants::find(store, &MerchantId::parse(&id).context("id")?).await?;
            let endpoint = NotifyEndpoint::parse(&url, server_name.as_deref())?;
            store
                .set_merchant_endpoint(&merchant.id, Some(&endpoint), now_ms())
                .await?;
            println!(
                "merchant {id}: events are pushed to {} (server name {})",
                endpoint.url, endpoint.server_name
            );
        }
        MerchantCommand::ClearNotify { id } => {
            let merchant = merchants::find(store, &MerchantId::parse(&id).context("id")?).await?;
            store
                .set_merchant_endpoint(&merchant.id, None, now_ms())
                .await?;
            println!("merchant {id}: events are no longer pushed (ListEvents still reads them)");
        }
        MerchantCommand::RevokeBinding {
            id,
            binding_id,
            reason,
        } => {
            let merchant = merchants::find(store, &MerchantId::parse(&id).context("id")?).await?;
            let reason = reason.trim();
            if reason.is_empty() || reason.chars().count() > 200 {
                anyhow::bail!("--reason must be 1 to 200 characters");
            }
            let binding_id = BindingId::parse(&binding_id).context("binding id")?;
            let Some(binding) = store
                .revoke_binding(
                    &merchant.id,
                    &binding_id,
                    RevokedBy::Operator,
                    reason,
                    now_ms(),
                )
                .await?
            else {
                anyhow::bail!("merchant {id} has no binding {binding_id}");
            };
            match binding.revocation().map(|r| r.by) {
                Some(RevokedBy::Operator) => println!(
                    "binding {binding_id} of merchant {id} is ended: its token pays no more, and the merchant is told"
                ),
                _ => println!("binding {binding_id} of merchant {id} was already ended"),
            }
        }
        MerchantCommand::RevokeCert { fingerprint, cert } => {
            let fingerprint = match (fingerprint, cert) {
                (Some(text), _) => CertFingerprint::parse(&text)?,
                (None, Some(path)) => PeerCertificate::from_pem_file(&path)?.fingerprint,
                (None, None) => anyhow::bail!("give a fingerprint or --cert"),
            };
            if !store.revoke_certificate(&fingerprint, now_ms()).await? {
                anyhow::bail!("no certificate in force has fingerprint {fingerprint}");
            }
            in_force_everywhere().await;
            println!("certificate {fingerprint} is revoked: every replica refuses it");
        }
    }
    Ok(())
}

async fn set_status(store: &dyn Store, id: &str, status: MerchantStatus) -> anyhow::Result<()> {
    let id = MerchantId::parse(id).context("id")?;
    if !store.set_merchant_status(&id, status).await? {
        anyhow::bail!("no merchant {id}");
    }
    Ok(())
}

/// Waits until every running replica has either read the merchant revision
/// since the change (and dropped its cache) or stopped trusting its cache.
async fn in_force_everywhere() {
    tokio::time::sleep(TRUSTED_FOR + Duration::from_millis(100)).await;
}
