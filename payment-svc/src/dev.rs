//! The development set-up behind `payment-svc dev`: certificates, a config
//! with fresh keys, and the demo merchant, all under one folder.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use paybind_shared::{money::Currency, tls::dev as pki};

use crate::{config, domain::merchants::Merchant};

/// The demo merchant's id and certificate identity.
pub const DEMO_MERCHANT: &str = "demo-shop";

pub struct DevSetup {
    pub config_file: PathBuf,
    pub certs: PathBuf,
}

/// Creates what is missing under `dir`; keeps what is there, so restarts
/// keep their data and keys.
pub fn prepare(dir: &Path, listen: SocketAddr) -> anyhow::Result<DevSetup> {
    let certs = dir.join("certs");
    pki::ensure_server(
        &certs,
        "payment-svc",
        &["localhost", "127.0.0.1", "payment-svc"],
    )?;
    pki::ensure_client(&certs, DEMO_MERCHANT)?;
    let config_file = dir.join("payment.toml");
    if !config_file.is_file() {
        std::fs::write(&config_file, config::dev_config_toml(dir, listen))?;
    }
    Ok(DevSetup { config_file, certs })
}

/// The demo merchant: may use direct entry; CNY; 500.00 per payment and
/// 2,000.00 per day without authentication.
pub fn demo_merchant() -> anyhow::Result<Merchant> {
    Ok(Merchant {
        id: DEMO_MERCHANT.into(),
        display_name: "Demo Shop".into(),
        cert_identity: DEMO_MERCHANT.into(),
        allowed_origins: vec!["http://localhost:8080".into()],
        return_urls: vec!["http://localhost:8080/".into()],
        direct_entry: true,
        currency: Currency::parse("CNY")?,
        per_payment_limit: 50_000,
        daily_limit: 200_000,
    })
}

/// What `dev` prints: where things are and grpcurl lines that work as written.
pub fn banner(setup: &DevSetup, addr: SocketAddr) -> String {
    let c = setup.certs.display();
    let host = format!("localhost:{}", addr.port());
    format!(
        r#"
payment-svc is running (development, SQLite) on {addr}, gRPC over mTLS.
  config:      {config}
  certificates: {c}  (the demo merchant is {DEMO_MERCHANT})
  SMS outbox:  the codes sent to shoppers are appended to {outbox}

Call it as the demo merchant:
  export PB="grpcurl -cacert {c}/ca.pem -cert {c}/{DEMO_MERCHANT}.pem -key {c}/{DEMO_MERCHANT}-key.pem"
  $PB {host} list
  $PB -d '{{"merchant_user_id":"alice","presentation":"PRESENTATION_REDIRECT","return_url":"http://localhost:8080/bound","idempotency_key":"bind-alice-1"}}' {host} paybind.payment.v1.BindingService/Bind
(README.md walks through binding, paying and refunding.)
"#,
        config = setup.config_file.display(),
        outbox = setup
            .config_file
            .parent()
            .map(|d| d.join("sms-outbox.jsonl").display().to_string())
            .unwrap_or_default(),
    )
}
