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
    metrics::MetricsSettings,
    tls::TlsFiles,
    vault::Vault,
};
use secrecy::{ExposeSecret, SecretString};

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

[web]
listen = "127.0.0.1:8080"
"#;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Settings {
    pub environment: Environment,
    pub grpc: GrpcSettings,
    /// Connection hygiene of the gRPC server (all defaults are safe).
    #[serde(default)]
    pub server: ServerSettings,
    /// Prometheus metrics (`GET /metrics`), on a listener of their own.
    #[serde(default = "default_metrics")]
    pub metrics: MetricsSettings,
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
    /// The storefront: the shop's HTML pages for shoppers.
    pub web: WebSettings,
}

/// The storefront's HTTP listener, the address shoppers' browsers use, and
/// the key of its session cookies. `Debug` does not show the key.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct WebSettings {
    pub listen: SocketAddr,
    /// Where shoppers' browsers reach the storefront (scheme, host, port;
    /// no path): its own origin, checked on every form post, and the base
    /// of the return URL it gives payment-svc. Unset: `http://localhost:`
    /// and the port listened on (development only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// The key that encrypts and authenticates the session cookie (base64
    /// of 64 bytes). Unset (development only): a random key per start, so
    /// sign-ins do not survive a restart.
    #[serde(
        default,
        serialize_with = "expose_optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub cookie_key: Option<SecretString>,
}

/// merchant-svc's metrics port unless configured: 9182, on loopback.
fn default_metrics() -> MetricsSettings {
    MetricsSettings::local(9182)
}

impl Default for WebSettings {
    /// `127.0.0.1:8080`, `http://localhost:8080`, a random key per start.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            cookie_key: None,
        }
    }
}

/// The length of a cookie key: 512 bits, split by the cookie crate into
/// an encryption and a signing half.
pub const COOKIE_KEY_BYTES: usize = 64;

impl WebSettings {
    /// A fresh random cookie key (base64 of 64 bytes): for development
    /// configurations written once and kept.
    pub fn random_cookie_key() -> SecretString {
        use base64::{engine::general_purpose::STANDARD, Engine};
        let mut key = [0u8; COOKIE_KEY_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
        SecretString::from(STANDARD.encode(key))
    }

    /// The configured cookie key's bytes, if one is configured.
    pub fn cookie_key_bytes(&self) -> anyhow::Result<Option<Vec<u8>>> {
        use base64::{engine::general_purpose::STANDARD, Engine};
        let Some(key) = &self.cookie_key else {
            return Ok(None);
        };
        let bytes = STANDARD
            .decode(key.expose_secret().trim())
            .map_err(|_| anyhow::anyhow!("web.cookie_key must be base64"))?;
        if bytes.len() != COOKIE_KEY_BYTES {
            anyhow::bail!(
                "web.cookie_key must be base64 of {COOKIE_KEY_BYTES} bytes, not {}",
                bytes.len()
            );
        }
        Ok(Some(bytes))
    }

    /// The storefront's origin (`scheme://host[:port]`), given the port it
    /// listens on: `public_url`'s, or `http://localhost:PORT`.
    pub fn public_origin(&self, listening_port: u16) -> anyhow::Result<url::Url> {
        let raw = match &self.public_url {
            Some(url) => url.clone(),
            None => format!("http://localhost:{listening_port}"),
        };
        let url = url::Url::parse(&raw).map_err(|e| anyhow::anyhow!("web.public_url: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            anyhow::bail!("web.public_url must be an http(s) URL, not {raw:?}");
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            anyhow::bail!(
                "web.public_url is the storefront's origin (scheme, host, port) without a path, not {raw:?}"
            );
        }
        if !url.username().is_empty() || url.password().is_some() {
            anyhow::bail!("web.public_url must not carry a user name or password");
        }
        Ok(url)
    }

    fn validate(&self, environment: Environment) -> anyhow::Result<()> {
        self.cookie_key_bytes()?;
        // The port only matters when public_url is unset.
        self.public_origin(self.listen.port())?;
        if environment.hardened() {
            let Some(public_url) = &self.public_url else {
                anyhow::bail!("web.public_url must be set (https) in {environment:?}");
            };
            require_https(environment, "web.public_url", public_url)?;
            if self.cookie_key.is_none() {
                anyhow::bail!(
                    "web.cookie_key must be set in {environment:?} (base64 of {COOKIE_KEY_BYTES} random bytes)"
                );
            }
        }
        Ok(())
    }
}

/// Writes an optional secret into a configuration file being generated.
fn expose_optional<S: serde::Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => serializer.serialize_str(secret.expose_secret()),
        None => serializer.serialize_none(),
    }
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
    /// The subject CN of payment-svc's client certificate: the one caller
    /// of this shop's `NotificationService` (its certificate must also be
    /// signed by `tls.ca_cert` here, payment-svc's CA).
    #[serde(default = "default_notifier_name")]
    pub notifier_name: String,
}

fn default_notifier_name() -> String {
    "payment-svc".to_owned()
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
            // Any free port: tests run many at once (paybind-local says
            // which port it wants).
            metrics: MetricsSettings::local(0),
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
                notifier_name: default_notifier_name(),
            },
            shop: ShopSettings {
                currency: "CNY".to_owned(),
                default_return_url: "http://localhost:8080/".to_owned(),
                settle_interval_ms: 2000,
            },
            secrets: Secrets::generate(),
            web: WebSettings {
                cookie_key: Some(WebSettings::random_cookie_key()),
                ..WebSettings::default()
            },
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
        if self.payment.notifier_name.trim().is_empty() {
            anyhow::bail!("payment.notifier_name must name payment-svc's certificate (its CN)");
        }
        if self.operators.contains_key(&self.payment.notifier_name) {
            anyhow::bail!(
                "[operators] names {:?}, which is payment-svc's certificate (payment.notifier_name): an operator and the payment institution must not share a name",
                self.payment.notifier_name
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
        self.web.validate(self.environment)?;
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

    /// The storefront as sandbox and production need it.
    const WEB: &str = r#"
[web]
public_url = "https://shop.example"
cookie_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
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
            "environment = \"production\"\n{TLS}{WEB}\n[operators]\nops = [\"admin\"]\n"
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
            "environment = \"sandbox\"\n{TLS}{WEB}\n[operators]\nops = [\"admin\"]\n[database]\nurl = \"postgres://shop@db/shop\"\nmax_connections = 4\n"
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
    fn the_storefront_has_development_defaults() {
        let s = load(&format!("environment = \"development\"\n{TLS}")).expect("valid");
        assert_eq!(s.web.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(
            s.web.public_origin(8080).expect("origin").as_str(),
            "http://localhost:8080/"
        );
        // Port 0 (tests): the public URL follows the port bound.
        assert_eq!(
            s.web.public_origin(41234).expect("origin").as_str(),
            "http://localhost:41234/"
        );
        assert!(s.web.cookie_key_bytes().expect("none").is_none());
    }

    #[test]
    fn the_storefront_is_https_with_a_key_in_production() {
        let base = format!("environment = \"production\"\n{TLS}\n[operators]\nops = [\"admin\"]\n");
        let err = load(&base).expect_err("no public url");
        assert!(err.to_string().contains("web.public_url"), "{err}");
        let err = load(&format!(
            "{base}[web]\npublic_url = \"http://shop.example\"\n"
        ))
        .expect_err("http");
        assert!(err.to_string().contains("https"), "{err}");
        let err = load(&format!(
            "{base}[web]\npublic_url = \"https://shop.example\"\n"
        ))
        .expect_err("no key");
        assert!(err.to_string().contains("web.cookie_key"), "{err}");
        let err = load(&format!(
            "{base}[web]\npublic_url = \"https://shop.example\"\ncookie_key = \"AAAA\"\n"
        ))
        .expect_err("short key");
        assert!(err.to_string().contains("64 bytes"), "{err}");
        let err = load(
            &format!("{base}{WEB}").replace("https://shop.example", "https://shop.example/store"),
        )
        .expect_err("a path");
        assert!(err.to_string().contains("without a path"), "{err}");
        load(&format!("{base}{WEB}")).expect("valid");
    }

    #[test]
    fn a_generated_cookie_key_is_valid_and_written_out() {
        let web = WebSettings {
            cookie_key: Some(WebSettings::random_cookie_key()),
            ..WebSettings::default()
        };
        assert_eq!(
            web.cookie_key_bytes().expect("valid").map(|k| k.len()),
            Some(64)
        );
        let text = toml::to_string(&web).expect("toml");
        assert!(text.contains("cookie_key"), "{text}");
        assert!(!format!("{web:?}").contains(
            web.cookie_key
                .as_ref()
                .map(|k| k.expose_secret())
                .unwrap_or("x")
        ));
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
