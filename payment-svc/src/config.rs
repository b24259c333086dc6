//! payment-svc's configuration: embedded defaults, then a TOML file, then
//! `PAYMENT__…` environment variables (e.g. `PAYMENT__DATABASE__URL`).
use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use paybind_shared::{
    config::{
        expose, expose_all, random_key, require_https, require_verified_database_tls,
        DatabaseSettings, Environment,
    },
    grpc::ServerSettings,
    metrics::MetricsSettings,
    tls::TlsFiles,
};
use secrecy::{ExposeSecret, SecretString};

use crate::domain::{
    deliveries::DeliverySettings, retention::RetentionSettings, velocity::VelocityLimits,
};
use serde::{Deserialize, Serialize};

const DEFAULTS: &str = r#"
public_base_url = "http://localhost:8081"

[grpc]
listen = "127.0.0.1:50051"

[web]
listen = "127.0.0.1:8081"

[database]
url = "sqlite:dev-data/payment.db"
max_connections = 8

[limits]
utc_offset_minutes = 480

[sessions]
ttl_secs = 900
max_card_attempts = 3

[sms]
provider = "none"

[recovery]
interval_ms = 1000

[secrets]
active_vault_key = "k1"
"#;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Settings {
    /// "development" or "production"; production refuses development-only
    /// settings (the SMS outbox).
    pub environment: Environment,
    /// Where the binding pages are served, as shoppers' browsers reach it.
    pub public_base_url: String,
    pub grpc: GrpcSettings,
    /// The binding pages' HTTP listener (shoppers reach it at
    /// `public_base_url`, usually through a TLS-terminating proxy).
    #[serde(default)]
    pub web: WebSettings,
    /// Connection hygiene of the gRPC server (all defaults are safe).
    #[serde(default)]
    pub server: ServerSettings,
    /// Prometheus metrics (`GET /metrics`), on a listener of their own.
    #[serde(default = "default_metrics")]
    pub metrics: MetricsSettings,
    pub database: DatabaseSettings,
    pub tls: TlsFiles,
    pub limits: LimitSettings,
    pub sessions: SessionSettings,
    pub sms: SmsSettings,
    #[serde(default)]
    pub acquirer: AcquirerSettings,
    pub recovery: RecoverySettings,
    /// Velocity limits against card testing, SMS pumping and code guessing.
    #[serde(default)]
    pub velocity: VelocityLimits,
    /// How long shopper data and the institution's records are kept.
    #[serde(default)]
    pub retention: RetentionSettings,
    /// Pushing events to merchants' notification endpoints: the retry
    /// schedule and each attempt's deadline.
    #[serde(default)]
    pub notifications: DeliverySettings,
    pub secrets: Secrets,
}

/// The card network. Only the simulator is built in: development and
/// sandbox run against it; production refuses it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AcquirerSettings {
    #[serde(default)]
    pub provider: AcquirerProvider,
    /// Keeps the simulator's ledger in this file (JSON lines), so that what
    /// it charged outlives a payment-svc restart or crash, as a real card
    /// network's records do. Without it the ledger is in memory.
    pub journal_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AcquirerProvider {
    /// The simulated card network with the README's test cards.
    #[default]
    Simulator,
}

/// Settling charges left in flight by a process that is gone.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RecoverySettings {
    /// How often to look for them.
    pub interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct GrpcSettings {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct WebSettings {
    /// Where the binding pages are served. A `public_base_url` with port 0
    /// takes the port this listener was given (tests bind port 0).
    pub listen: SocketAddr,
}

/// payment-svc's metrics port unless configured: 9181, on loopback.
fn default_metrics() -> MetricsSettings {
    MetricsSettings::local(9181)
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LimitSettings {
    /// The time zone of "today" for daily limits, minutes east of UTC.
    pub utc_offset_minutes: i32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SessionSettings {
    pub ttl_secs: i64,
    pub max_card_attempts: u32,
    /// The least wait between two codes of one session.
    #[serde(default = "default_resend_interval")]
    pub resend_interval_secs: u32,
}

fn default_resend_interval() -> u32 {
    30
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SmsSettings {
    /// "dev-outbox" (development only) or "none".
    pub provider: String,
    /// For dev-outbox: also append messages to this file as JSON lines.
    pub outbox_file: Option<PathBuf>,
}

/// Keys, each the base64 of 32 random bytes. `Debug` shows none of them.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Secrets {
    /// Data-encryption keys by id; new data is sealed with `active_vault_key`.
    #[serde(default, serialize_with = "expose_all")]
    pub vault_keys: BTreeMap<String, SecretString>,
    pub active_vault_key: String,
    /// MAC key of binding tokens: key id 1. May be left out once every
    /// token has moved to a key of `token_keys` (rotation).
    #[serde(default, serialize_with = "expose_opt")]
    pub token_key: Option<SecretString>,
    /// More token keys, by id (2 to 255), for rotation: a token names the
    /// key that made it and is accepted while that key is configured.
    #[serde(default, serialize_with = "expose_all")]
    pub token_keys: BTreeMap<String, SecretString>,
    /// The key id new tokens (and tokens shown again) are made with.
    #[serde(default = "first_token_key")]
    pub active_token_key: u8,
    /// HMAC key of card fingerprints.
    #[serde(serialize_with = "expose")]
    pub fingerprint_key: SecretString,
    /// HMAC key of stored one-time codes.
    #[serde(serialize_with = "expose")]
    pub otp_key: SecretString,
}

fn first_token_key() -> u8 {
    1
}

fn expose_opt<S: serde::Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => expose(secret, serializer),
        None => serializer.serialize_none(),
    }
}

impl Secrets {
    /// The token keys by id: `token_key` is 1, `token_keys` the others.
    pub fn token_keys(&self) -> anyhow::Result<BTreeMap<u8, &SecretString>> {
        let mut keys: BTreeMap<u8, &SecretString> =
            self.token_key.iter().map(|key| (1u8, key)).collect();
        for (id, key) in &self.token_keys {
            let id: u8 = id.parse().ok().filter(|id| *id >= 2).ok_or_else(|| {
                anyhow::anyhow!(
                    "secrets.token_keys: {id:?} is not a key id from 2 to 255 (1 is token_key)"
                )
            })?;
            keys.insert(id, key);
        }
        if keys.is_empty() {
            anyhow::bail!(
                "a binding-token key is required: secrets.token_key (or secrets.token_keys)"
            );
        }
        if !keys.contains_key(&self.active_token_key) {
            anyhow::bail!(
                "secrets.active_token_key {} is not configured",
                self.active_token_key
            );
        }
        Ok(keys)
    }

    /// One key for two purposes would let a value made for one pass as the
    /// other (a token MAC as a fingerprint, say): every key is different.
    pub fn require_distinct(&self) -> anyhow::Result<()> {
        let mut seen: Vec<(String, &str)> = Vec::new();
        let named = self
            .token_key
            .iter()
            .map(|key| ("secrets.token_key".to_owned(), key))
            .chain([
                ("secrets.fingerprint_key".to_owned(), &self.fingerprint_key),
                ("secrets.otp_key".to_owned(), &self.otp_key),
            ])
            .chain(
                self.vault_keys
                    .iter()
                    .map(|(id, key)| (format!("secrets.vault_keys.{id}"), key)),
            )
            .chain(
                self.token_keys
                    .iter()
                    .map(|(id, key)| (format!("secrets.token_keys.{id}"), key)),
            );
        for (name, key) in named {
            let value = key.expose_secret().trim();
            if let Some((first, _)) = seen.iter().find(|(_, v)| *v == value) {
                anyhow::bail!("{name} is the same key as {first}: each purpose needs its own");
            }
            seen.push((name, value));
        }
        Ok(())
    }

    /// Fresh random keys, one vault key `k1`: for development and tests.
    pub fn generate() -> Self {
        let key = random_key;
        Self {
            vault_keys: BTreeMap::from([("k1".to_owned(), key())]),
            active_vault_key: "k1".to_owned(),
            token_key: Some(key()),
            token_keys: BTreeMap::new(),
            active_token_key: 1,
            fingerprint_key: key(),
            otp_key: key(),
        }
    }
}

impl Settings {
    pub fn load(file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let settings: Self = paybind_shared::config::load(DEFAULTS, file, "PAYMENT__")?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.server.validate()?;
        let environment = self.environment;
        match self.sms.provider.as_str() {
            "none" => {}
            "dev-outbox" if environment == Environment::Production => {
                anyhow::bail!("sms.provider = \"dev-outbox\" is for development only")
            }
            "dev-outbox" => {}
            other => anyhow::bail!("sms.provider must be dev-outbox or none, not {other:?}"),
        }
        if environment == Environment::Production
            && self.acquirer.provider == AcquirerProvider::Simulator
        {
            anyhow::bail!(
                "production refuses the simulated card network (acquirer.provider = \"simulator\"); \
                 to run against it with everything else as in production, set environment = \"sandbox\""
            );
        }
        require_https(environment, "public_base_url", &self.public_base_url)?;
        require_verified_database_tls(environment, &self.database)?;
        self.secrets.require_distinct()?;
        self.secrets.token_keys()?;
        if !(-720..=840).contains(&self.limits.utc_offset_minutes) {
            anyhow::bail!("limits.utc_offset_minutes must be between -720 and 840");
        }
        if !(60..=86_400).contains(&self.sessions.ttl_secs) {
            anyhow::bail!("sessions.ttl_secs must be between 60 and 86400");
        }
        if !(50..=60_000).contains(&self.recovery.interval_ms) {
            anyhow::bail!("recovery.interval_ms must be between 50 and 60000");
        }
        if !(1..=600).contains(&self.sessions.resend_interval_secs) {
            anyhow::bail!("sessions.resend_interval_secs must be between 1 and 600");
        }
        self.velocity.validate()?;
        self.retention.validate()?;
        self.notifications.validate(self.environment.hardened())?;
        if !(1..=10).contains(&self.sessions.max_card_attempts) {
            anyhow::bail!("sessions.max_card_attempts must be between 1 and 10");
        }
        url::Url::parse(&self.public_base_url)
            .map_err(|e| anyhow::anyhow!("public_base_url: {e}"))?;
        Ok(())
    }
}

impl Settings {
    /// A development configuration: SQLite and the SMS outbox under `dir`,
    /// the development certificates under `dir/certs`, fresh random keys.
    pub fn development(dir: &std::path::Path, listen: SocketAddr) -> Self {
        Self {
            environment: Environment::Development,
            public_base_url: "http://localhost:8081".to_owned(),
            grpc: GrpcSettings { listen },
            web: WebSettings::default(),
            server: ServerSettings::default(),
            // Any free port: tests run many at once (paybind-local says
            // which port it wants).
            metrics: MetricsSettings::local(0),
            database: DatabaseSettings::new(
                format!("sqlite:{}", dir.join("payment.db").display()),
                8,
            ),
            tls: TlsFiles {
                ca_cert: dir.join("certs/ca.pem"),
                cert: dir.join("certs/payment-svc.pem"),
                key: dir.join("certs/payment-svc-key.pem"),
            },
            limits: LimitSettings {
                utc_offset_minutes: 480,
            },
            sessions: SessionSettings {
                ttl_secs: 900,
                max_card_attempts: 3,
                resend_interval_secs: default_resend_interval(),
            },
            sms: SmsSettings {
                provider: "dev-outbox".to_owned(),
                outbox_file: Some(dir.join("sms-outbox.jsonl")),
            },
            acquirer: AcquirerSettings {
                provider: AcquirerProvider::Simulator,
                journal_file: Some(dir.join("acquirer-ledger.jsonl")),
            },
            recovery: RecoverySettings { interval_ms: 1000 },
            velocity: VelocityLimits::development(),
            retention: RetentionSettings::default(),
            notifications: DeliverySettings::default(),
            secrets: Secrets::generate(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
        let file = dir.join("c.toml");
        std::fs::write(&file, text).expect("write");
        file
    }

    fn dev_file(dir: &std::path::Path) -> (Settings, std::path::PathBuf) {
        let settings = Settings::development(dir, "127.0.0.1:0".parse().expect("addr"));
        let file = dir.join("c.toml");
        paybind_shared::config::write_toml(&file, "test", &settings).expect("write");
        (settings, file)
    }

    #[test]
    fn the_dev_config_round_trips_through_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (written, file) = dev_file(dir.path());
        let settings = Settings::load(Some(&file)).expect("loads");
        assert_eq!(settings.sms.provider, "dev-outbox");
        let key = |s: &Settings| {
            s.secrets
                .token_key
                .as_ref()
                .map(|k| k.expose_secret().to_owned())
        };
        assert_eq!(key(&settings), key(&written));
        let key = key(&settings).expect("a token key");
        assert!(
            !format!("{settings:?}").contains(&key),
            "Debug shows no key"
        );
    }

    #[test]
    fn production_refuses_the_dev_outbox() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, file) = dev_file(dir.path());
        let text = std::fs::read_to_string(&file).expect("read").replace(
            "environment = \"development\"",
            "environment = \"production\"",
        );
        let err = Settings::load(Some(&write(dir.path(), &text))).expect_err("refused");
        assert!(err.to_string().contains("development only"), "{err}");
    }

    /// The development file, as `environment`, with `edit` applied.
    fn hardened(environment: &str, edit: impl Fn(String) -> String) -> anyhow::Result<Settings> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, file) = dev_file(dir.path());
        let text = std::fs::read_to_string(&file)
            .expect("read")
            .replace(
                "environment = \"development\"",
                &format!("environment = \"{environment}\""),
            )
            .replace("http://localhost:8081", "https://pay.example.com")
            .replace(
                "provider = \"dev-outbox\"",
                if environment == "production" {
                    "provider = \"none\""
                } else {
                    "provider = \"dev-outbox\""
                },
            );
        Settings::load(Some(&write(dir.path(), &edit(text))))
    }

    fn refused(result: anyhow::Result<Settings>, says: &str) {
        let err = result.expect_err("refused");
        assert!(format!("{err:#}").contains(says), "{says}: {err:#}");
    }

    #[test]
    fn production_refuses_the_simulated_card_network_and_sandbox_allows_it() {
        refused(hardened("production", |t| t), "simulated card network");
        let sandbox = hardened("sandbox", |t| t).expect("sandbox runs the simulator");
        assert_eq!(sandbox.environment, Environment::Sandbox);
    }

    #[test]
    fn hardened_environments_refuse_http_and_unverified_database_tls() {
        refused(
            hardened("sandbox", |t| {
                t.replace("https://pay.example.com", "http://pay.example.com")
            }),
            "public_base_url must be https",
        );
        hardened("sandbox", |t| {
            t.replace("https://pay.example.com", "http://localhost:8081")
        })
        .expect("localhost is the machine's own");
        let pg = |url: &'static str| {
            move |t: String| {
                let start = t.find("url = \"sqlite:").expect("db url");
                let end = start + t[start..].find('\n').expect("eol");
                format!("{}url = \"{url}\"{}", &t[..start], &t[end..])
            }
        };
        refused(
            hardened("sandbox", pg("postgres://payment@db/payment")),
            "sslmode=verify-full",
        );
        hardened(
            "sandbox",
            pg("postgres://payment@db/payment?sslmode=verify-full"),
        )
        .expect("verified");
        hardened("sandbox", |t| {
            pg("postgres://payment@db/payment")(t).replace(
                "tls_verified_elsewhere = false",
                "tls_verified_elsewhere = true",
            )
        })
        .expect("stated");
        // Development takes them all.
        Settings::load(Some(&dev_file(tempfile::tempdir().expect("dir").path()).1))
            .expect("development");
    }

    #[test]
    fn one_limit_can_be_set_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, file) = dev_file(dir.path());
        let text = std::fs::read_to_string(&file).expect("read");
        let start = text.find("[velocity]").expect("velocity section");
        let end = start + text[start..].find("\n\n").unwrap_or(text.len() - start);
        let text = format!(
            "{}[velocity]\ncodes_per_phone_per_hour = 100\n{}",
            &text[..start],
            &text[end..]
        );
        let settings = Settings::load(Some(&write(dir.path(), &text))).expect("valid");
        assert_eq!(settings.velocity.codes_per_phone_per_hour, 100);
        assert_eq!(
            settings.velocity.code_tries_per_session,
            VelocityLimits::default().code_tries_per_session
        );
    }

    #[test]
    fn one_key_for_two_purposes_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (settings, file) = dev_file(dir.path());
        let otp = settings.secrets.otp_key.expose_secret().to_owned();
        let token = settings
            .secrets
            .token_key
            .as_ref()
            .expect("token key")
            .expose_secret()
            .to_owned();
        let text = std::fs::read_to_string(&file)
            .expect("read")
            .replace(&token, &otp);
        let err = Settings::load(Some(&write(dir.path(), &text))).expect_err("equal keys");
        assert!(format!("{err:#}").contains("same key"), "{err:#}");
    }

    #[test]
    fn a_configuration_must_say_where_it_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, file) = dev_file(dir.path());
        let text = std::fs::read_to_string(&file)
            .expect("read")
            .replace("environment = \"development\"", "");
        let err = Settings::load(Some(&write(dir.path(), &text))).expect_err("unset");
        assert!(format!("{err:#}").contains("environment"), "{err:#}");
    }

    #[test]
    fn the_environment_is_one_of_a_fixed_set() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, file) = dev_file(dir.path());
        for wrong in ["prod", "Production", ""] {
            let text = std::fs::read_to_string(&file).expect("read").replace(
                "environment = \"development\"",
                &format!("environment = \"{wrong}\""),
            );
            let err = Settings::load(Some(&write(dir.path(), &text))).expect_err("refused");
            assert!(
                format!("{err:#}").contains("environment"),
                "{wrong}: {err:#}"
            );
        }
    }

    #[test]
    fn the_production_example_needs_its_secrets() {
        let example = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/payment-svc.production.toml"
        );
        let err = Settings::load(Some(std::path::Path::new(example))).expect_err("no secrets");
        assert!(
            err.to_string().contains("fingerprint_key"),
            "names the missing key: {err}"
        );
        // With the secrets appended (as the environment would give them) it is valid.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = std::fs::read_to_string(example).expect("example");
        // Without a token key, it says that one is needed.
        let no_token = format!(
            "{text}fingerprint_key = \"b\"\notp_key = \"c\"\n[secrets.vault_keys]\nk1 = \"d\"\n"
        )
        .replace("environment = \"production\"", "environment = \"sandbox\"");
        let err = Settings::load(Some(&write(dir.path(), &no_token))).expect_err("no token key");
        assert!(format!("{err:#}").contains("token_key"), "{err:#}");
        text.push_str("token_key = \"a\"\nfingerprint_key = \"b\"\notp_key = \"c\"\n[secrets.vault_keys]\nk1 = \"d\"\n");
        // As production it refuses the simulator (no card network is built
        // in yet); the same shape as a sandbox is valid.
        let err = Settings::load(Some(&write(dir.path(), &text))).expect_err("simulator");
        assert!(
            format!("{err:#}").contains("simulated card network"),
            "{err:#}"
        );
        let text = text.replace("environment = \"production\"", "environment = \"sandbox\"");
        let settings = Settings::load(Some(&write(dir.path(), &text))).expect("valid");
        assert_eq!(settings.environment, Environment::Sandbox);
        assert_eq!(settings.sms.provider, "none");
    }
}
