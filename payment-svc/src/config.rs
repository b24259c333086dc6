//! payment-svc's configuration: embedded defaults, then a TOML file, then
//! `PAYMENT__…` environment variables (e.g. `PAYMENT__DATABASE__URL`).
use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use paybind_shared::{
    config::{expose, expose_all, random_key, DatabaseSettings, Environment},
    grpc::ServerSettings,
    tls::TlsFiles,
};
use secrecy::SecretString;

use crate::domain::{retention::RetentionSettings, velocity::VelocityLimits};
use serde::{Deserialize, Serialize};

const DEFAULTS: &str = r#"
environment = "development"
public_base_url = "http://localhost:8081"

[grpc]
listen = "127.0.0.1:50051"

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
    /// Connection hygiene of the gRPC server (all defaults are safe).
    #[serde(default)]
    pub server: ServerSettings,
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
    pub secrets: Secrets,
}

/// The simulated card network (the one simulated part of paybind).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AcquirerSettings {
    /// Keeps the simulator's ledger in this file (JSON lines), so that what
    /// it charged outlives a payment-svc restart or crash, as a real card
    /// network's records do. Without it the ledger is in memory.
    pub journal_file: Option<PathBuf>,
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
    /// MAC key of binding tokens.
    #[serde(serialize_with = "expose")]
    pub token_key: SecretString,
    /// HMAC key of card fingerprints.
    #[serde(serialize_with = "expose")]
    pub fingerprint_key: SecretString,
    /// HMAC key of stored one-time codes.
    #[serde(serialize_with = "expose")]
    pub otp_key: SecretString,
}

impl Secrets {
    /// Fresh random keys, one vault key `k1`: for development and tests.
    pub fn generate() -> Self {
        let key = random_key;
        Self {
            vault_keys: BTreeMap::from([("k1".to_owned(), key())]),
            active_vault_key: "k1".to_owned(),
            token_key: key(),
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
        match self.sms.provider.as_str() {
            "none" => {}
            "dev-outbox" if self.environment == Environment::Production => {
                anyhow::bail!("sms.provider = \"dev-outbox\" is for development only")
            }
            "dev-outbox" => {}
            other => anyhow::bail!("sms.provider must be dev-outbox or none, not {other:?}"),
        }
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
            server: ServerSettings::default(),
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
                journal_file: Some(dir.join("acquirer-ledger.jsonl")),
            },
            recovery: RecoverySettings { interval_ms: 1000 },
            velocity: VelocityLimits::default(),
            retention: RetentionSettings::default(),
            secrets: Secrets::generate(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

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
        let key = written.secrets.token_key.expose_secret().to_owned();
        assert_eq!(settings.secrets.token_key.expose_secret(), key);
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
            err.to_string().contains("token_key"),
            "names the missing key: {err}"
        );
        // With the secrets appended (as the environment would give them) it is valid.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = std::fs::read_to_string(example).expect("example");
        text.push_str("token_key = \"a\"\nfingerprint_key = \"b\"\notp_key = \"c\"\n[secrets.vault_keys]\nk1 = \"d\"\n");
        let settings = Settings::load(Some(&write(dir.path(), &text))).expect("valid");
        assert_eq!(settings.environment, Environment::Production);
        assert_eq!(settings.sms.provider, "none");
    }
}
