//! merchant-svc's configuration: embedded defaults, a TOML file, then
//! `MERCHANT__…` environment variables (e.g. `MERCHANT__DATABASE__URL`).
use std::net::SocketAddr;

use std::collections::BTreeMap;

use paybind_shared::{
    config::{
        expose_all, random_key, require_https, require_verified_database_tls, DatabaseSettings,
        Environment,
    },
    grpc::ServerSettings,
    tls::TlsFiles,
    vault::Vault,
};
use secrecy::SecretString;

use crate::grpc::Role;
use serde::{Deserialize, Serialize};

const DEFAULTS: &str = r#"

[grpc]
listen = "127.0.0.1:50052"

[database]
url = "sqlite:dev-data/merchant.db"
max_connections = 8

[payment]
endpoint = "https://localhost:50051"
server_name = "localhost"
timeout_ms = 5000
attempts = 3
overall_timeout_ms = 12000
quick_timeout_ms = 500

[secrets]
active_vault_key = "k1"

[shop]
currency = "CNY"
default_return_url = "http://localhost:8080/"
settle_interval_ms = 2000
"#;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Settings {
    pub environment: Environment,
    pub grpc: GrpcSettings,
    /// Connection hygiene of the gRPC server (all defaults are safe).
    #[serde(default)]
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    /// This service's own API: its certificate, and the CA of its operators'
    /// client certificates.
    pub tls: TlsFiles,
    /// The operators allowed to call the API (by their certificate's
    /// subject CN) and their roles. Empty: in development any certificate
    /// the CA signed may do everything; production refuses it.
    #[serde(default)]
    pub operators: BTreeMap<String, Vec<Role>>,
    /// Replaced by `operators`; a configuration that still sets it is
    /// refused rather than read as "no operators".
    #[serde(default, skip_serializing)]
    pub allowed_clients: Option<serde::de::IgnoredAny>,
    pub payment: PaymentSettings,
    pub shop: ShopSettings,
    pub secrets: Secrets,
}

/// The keys that seal the binding tokens at rest (AES-256-GCM, base64 of
/// 32 bytes each, by id; new tokens are sealed with the active one, old
/// ones open with their own). `Debug` shows none of them.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Secrets {
    #[serde(default, serialize_with = "expose_all")]
    pub vault_keys: BTreeMap<String, SecretString>,
    pub active_vault_key: String,
}

impl Secrets {
    /// One fresh random key `k1`: for development and tests.
    pub fn generate() -> Self {
        Self {
            vault_keys: BTreeMap::from([("k1".to_owned(), random_key())]),
            active_vault_key: "k1".to_owned(),
        }
    }

    pub fn vault(&self) -> anyhow::Result<Vault> {
        Vault::new(&self.vault_keys, &self.active_vault_key)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct GrpcSettings {
    pub listen: SocketAddr,
}

/// How to reach payment-svc: as this merchant, over mTLS.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PaymentSettings {
    /// e.g. `https://localhost:50051`.
    pub endpoint: String,
    /// The name payment-svc's certificate must carry.
    pub server_name: String,
    /// The merchant's client certificate at payment-svc, and the CA of
    /// payment-svc's certificate.
    pub tls: TlsFiles,
    /// Deadline of each try of a call.
    pub timeout_ms: u64,
    /// Tries of a call that failed without an answer (UNAVAILABLE, a
    /// deadline — payment-svc's or this client's own — or ABORTED).
    pub attempts: u32,
    /// Deadline of a call with all its tries and the pauses between them.
    pub overall_timeout_ms: u64,
    /// Deadline of a read that only decorates an answer (today's limits on
    /// GetUser): tried once, and the answer goes without it if it is late.
    pub quick_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ShopSettings {
    /// The shop's currency (ISO 4217).
    pub currency: String,
    /// Where binding pages return to when a request names none.
    pub default_return_url: String,
    /// How often orders left PENDING_PAYMENT (payment-svc unreachable) are
    /// sent again.
    pub settle_interval_ms: u64,
}

impl Settings {
    /// A development configuration: SQLite under `dir`, the development
    /// certificates under `certs` (its own server certificate, and
    /// `merchant`'s client certificate at payment-svc), one operator.
    pub fn development(
        dir: &std::path::Path,
        certs: &std::path::Path,
        listen: SocketAddr,
        payment: SocketAddr,
        merchant: &str,
        operator: &str,
    ) -> Self {
        let cert = |name: &str| TlsFiles {
            ca_cert: certs.join("ca.pem"),
            cert: certs.join(format!("{name}.pem")),
            key: certs.join(format!("{name}-key.pem")),
        };
        Self {
            environment: Environment::Development,
            grpc: GrpcSettings { listen },
            server: ServerSettings::default(),
            database: DatabaseSettings::new(
                format!("sqlite:{}", dir.join("merchant.db").display()),
                8,
            ),
            tls: cert("merchant-svc"),
            operators: BTreeMap::from([(operator.to_owned(), vec![Role::Admin])]),
            allowed_clients: None,
            payment: PaymentSettings {
                endpoint: format!("https://localhost:{}", payment.port()),
                server_name: "localhost".to_owned(),
                tls: cert(merchant),
                timeout_ms: 5000,
                attempts: 3,
                overall_timeout_ms: 12_000,
                quick_timeout_ms: 500,
            },
            shop: ShopSettings {
                currency: "CNY".to_owned(),
                default_return_url: "http://localhost:8080/".to_owned(),
                settle_interval_ms: 2000,
            },
            secrets: Secrets::generate(),
        }
    }

    pub fn load(file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let settings: Self = paybind_shared::config::load(DEFAULTS, file, "MERCHANT__")?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.server.validate()?;
        paybind_shared::money::Currency::parse(&self.shop.currency)
            .map_err(|e| anyhow::anyhow!("shop.currency: {e}"))?;
        if !self.payment.endpoint.starts_with("https://") {
            anyhow::bail!("payment.endpoint must be https:// (payment-svc only speaks mTLS)");
        }
        if !(100..=60_000).contains(&self.payment.timeout_ms) {
            anyhow::bail!("payment.timeout_ms must be between 100 and 60000");
        }
        if !(1..=10).contains(&self.payment.attempts) {
            anyhow::bail!("payment.attempts must be between 1 and 10");
        }
        if self.payment.overall_timeout_ms < self.payment.timeout_ms {
            anyhow::bail!("payment.overall_timeout_ms must be at least payment.timeout_ms");
        }
        if !(10..=self.payment.timeout_ms).contains(&self.payment.quick_timeout_ms) {
            anyhow::bail!("payment.quick_timeout_ms must be between 10 and payment.timeout_ms");
        }
        if self.shop.settle_interval_ms < 50 {
            anyhow::bail!("shop.settle_interval_ms must be at least 50");
        }
        self.secrets
            .vault()
            .map_err(|e| anyhow::anyhow!("secrets: {e:#}"))?;
        if self.allowed_clients.is_some() {
            anyhow::bail!(
                "allowed_clients was replaced by [operators]: name each operator's certificate CN with its roles, e.g. operator = [\"admin\"]"
            );
        }
        if self.environment.hardened() && self.operators.is_empty() {
            anyhow::bail!(
                "[operators] must name the operators' certificates in {:?}",
                self.environment
            );
        }
        require_verified_database_tls(self.environment, &self.database)?;
        require_https(
            self.environment,
            "shop.default_return_url",
            &self.shop.default_return_url,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> anyhow::Result<Settings> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("merchant.toml");
        std::fs::write(&file, text)?;
        Settings::load(Some(&file))
    }

    const TLS: &str = r#"
[tls]
ca_cert = "ca.pem"
cert = "merchant-svc.pem"
key = "merchant-svc-key.pem"
[payment.tls]
ca_cert = "ca.pem"
cert = "shop.pem"
key = "shop-key.pem"
[secrets.vault_keys]
k1 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
"#;

    #[test]
    fn operators_are_listed_with_their_roles() {
        let s = load(&format!(
            "environment = \"development\"\n{TLS}\n[operators]\nops = [\"admin\"]\ndesk = [\"read\"]\n"
        ))
        .expect("valid");
        assert_eq!(s.operators["desk"], [Role::Read]);
        let err = load(&format!(
            "environment = \"development\"\n{TLS}\n[operators]\ndesk = [\"reader\"]\n"
        ))
        .expect_err("role");
        assert!(format!("{err:#}").contains("reader"), "{err:#}");
    }

    #[test]
    fn production_needs_operators_and_a_known_environment() {
        let err = load(&format!("environment = \"production\"\n{TLS}")).expect_err("none");
        assert!(err.to_string().contains("[operators]"), "{err}");
        let err = load(&format!("environment = \"prod\"\n{TLS}")).expect_err("prod");
        assert!(format!("{err:#}").contains("environment"), "{err:#}");
        load(&format!(
            "environment = \"production\"\n{TLS}\n[operators]\nops = [\"admin\"]\n"
        ))
        .expect("valid");
    }

    #[test]
    fn a_configuration_must_say_where_it_runs() {
        let err = load(TLS).expect_err("unset");
        assert!(format!("{err:#}").contains("environment"), "{err:#}");
    }

    #[test]
    fn sandbox_is_set_up_as_production() {
        let err = load(&format!("environment = \"sandbox\"\n{TLS}")).expect_err("operators");
        assert!(err.to_string().contains("[operators]"), "{err}");
        let ok = format!(
            "environment = \"sandbox\"\n{TLS}\n[operators]\nops = [\"admin\"]\n[database]\nurl = \"postgres://shop@db/shop\"\nmax_connections = 4\n"
        );
        let err = load(&ok).expect_err("unverified database TLS");
        assert!(err.to_string().contains("sslmode"), "{err}");
        load(&ok.replace("/shop\"", "/shop?sslmode=verify-full\"")).expect("valid");
    }

    #[test]
    fn the_token_keys_are_required() {
        let without = TLS.replace("[secrets.vault_keys]\nk1 = ", "# ");
        let err = load(&format!("environment = \"development\"\n{without}")).expect_err("no key");
        assert!(format!("{err:#}").contains("vault"), "{err:#}");
    }

    #[test]
    fn the_old_allowed_clients_is_refused_not_ignored() {
        let err = load(&format!(
            "environment = \"development\"\nallowed_clients = []\n{TLS}"
        ))
        .expect_err("replaced");
        assert!(err.to_string().contains("[operators]"), "{err}");
    }
}
