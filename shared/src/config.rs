//! Layered configuration: embedded defaults, then an optional file, then
//! environment variables such as `PAYMENT__DATABASE__URL` (double underscores
//! separate the levels).
use std::path::Path;

use figment::{
    providers::{Env, Format, Toml},
    Figment,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{de::DeserializeOwned, Deserialize, Serialize, Serializer};

/// Where a service runs. A fixed set: a misspelt value (`"prod"`) is a
/// configuration error, never a development default in disguise.
///
/// There is no default: a configuration that does not say where it runs is
/// refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Development-only conveniences allowed (the SMS outbox, the
    /// development CA, any operator certificate at merchant-svc, plain
    /// http, databases without TLS).
    Development,
    /// Set up as production (its own CA, https, verified database TLS,
    /// listed operators) but against the simulated card network and the
    /// SMS outbox: for merchants' integration tests.
    Sandbox,
    /// Refuses every development or simulated part.
    Production,
}

impl Environment {
    /// Sandbox and production: everything but the simulated parts must be
    /// as in production.
    pub fn hardened(self) -> bool {
        !matches!(self, Environment::Development)
    }
}

/// In a hardened environment, a PostgreSQL URL must verify the server's
/// certificate and name (`sslmode=verify-full`), unless the operator states
/// that the connection is protected otherwise. (`verify-ca` is not enough:
/// without a pinned root it accepts any publicly issued certificate.)
pub fn require_verified_database_tls(
    environment: Environment,
    database: &DatabaseSettings,
) -> anyhow::Result<()> {
    let url = database.url.expose_secret();
    if !environment.hardened() || !url.starts_with("postgres") || database.tls_verified_elsewhere {
        return Ok(());
    }
    let verified = url::Url::parse(url)
        .map(|u| {
            u.query_pairs()
                .any(|(k, v)| k == "sslmode" && v == "verify-full")
        })
        .unwrap_or(false);
    if !verified {
        anyhow::bail!(
            "database.url must verify the server's certificate and name (sslmode=verify-full) in {environment:?}; \
             if the connection is protected otherwise (a private link), say so with database.tls_verified_elsewhere = true"
        );
    }
    Ok(())
}

/// In a hardened environment a public URL must be https (localhost aside,
/// for a machine's own tests).
pub fn require_https(environment: Environment, what: &str, url: &str) -> anyhow::Result<()> {
    let parsed = url::Url::parse(url).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    let local = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    if environment.hardened() && parsed.scheme() != "https" && !local {
        anyhow::bail!("{what} must be https in {environment:?}, not {url:?}");
    }
    Ok(())
}

/// A service's database: `sqlite:path/file.db` or `postgres://user@host/db`.
/// `Debug` hides the URL, which may carry a password.
#[derive(Clone, Deserialize, Serialize)]
pub struct DatabaseSettings {
    #[serde(serialize_with = "expose")]
    pub url: SecretString,
    pub max_connections: u32,
    /// States that a PostgreSQL connection without certificate verification
    /// is protected otherwise (sandbox and production refuse it unless so).
    #[serde(default)]
    pub tls_verified_elsewhere: bool,
}

impl DatabaseSettings {
    pub fn new(url: impl Into<String>, max_connections: u32) -> Self {
        Self {
            url: SecretString::from(url.into()),
            max_connections,
            tls_verified_elsewhere: false,
        }
    }
}

/// Writes a secret into a configuration file being generated (the
/// development configs); `Debug` never shows it.
pub fn expose<S: Serializer>(secret: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

/// Writes a map of secrets (keys by id) into a generated configuration file.
pub fn expose_all<S: Serializer>(
    keys: &std::collections::BTreeMap<String, SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(keys.iter().map(|(id, k)| (id, k.expose_secret())))
}

/// A fresh random 32-byte key, base64: for development and tests.
pub fn random_key() -> SecretString {
    use base64::{engine::general_purpose::STANDARD, Engine};
    SecretString::from(STANDARD.encode(rand::random::<[u8; 32]>()))
}

/// A configuration value as a TOML file, under a comment that says where it
/// came from. Readable by its owner only: it may hold keys.
pub fn write_toml<T: Serialize>(path: &Path, header: &str, value: &T) -> anyhow::Result<()> {
    use std::io::Write;
    let body = toml::to_string(value)?;
    let comment: String = header.lines().map(|l| format!("# {l}\n")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut file| file.write_all(format!("{comment}\n{body}").as_bytes()))
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &"[REDACTED]")
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// Loads `T` from `defaults` (TOML), `file` if given (it must exist), then the
/// environment variables starting with `env_prefix` (e.g. `"PAYMENT__"`).
///
/// The error names the failing key, e.g. `database.url`.
pub fn load<T: DeserializeOwned>(
    defaults: &str,
    file: Option<&Path>,
    env_prefix: &str,
) -> anyhow::Result<T> {
    let mut figment = Figment::from(Toml::string(defaults));
    if let Some(file) = file {
        if !file.is_file() {
            anyhow::bail!("config file {} does not exist", file.display());
        }
        figment = figment.merge(Toml::file(file));
    }
    figment = figment.merge(Env::prefixed(env_prefix).split("__"));
    figment
        .extract()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Sample {
        name: String,
        db: Db,
    }
    #[derive(serde::Deserialize)]
    struct Db {
        url: String,
        pool: u32,
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "name = \"from-file\"\n[db]\nurl = \"file-url\"\n").expect("write");
        // A prefix no other test uses, so setting it cannot race with them.
        std::env::set_var("SAMPLETEST__DB__URL", "env-url");
        let s: Sample = load(
            "name = \"default\"\n[db]\nurl = \"d\"\npool = 4\n",
            Some(&file),
            "SAMPLETEST__",
        )
        .expect("loads");
        assert_eq!(s.name, "from-file");
        assert_eq!(s.db.url, "env-url");
        assert_eq!(s.db.pool, 4);
    }

    #[test]
    fn bad_value_names_the_key() {
        let err = load::<Sample>(
            "name = \"x\"\n[db]\nurl = \"d\"\npool = \"many\"\n",
            None,
            "NOPE_UNUSED__",
        )
        .err()
        .expect("must fail");
        assert!(err.to_string().contains("pool"), "{err}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = load::<Sample>("", Some(Path::new("/nonexistent/x.toml")), "X__")
            .err()
            .expect("must fail");
        assert!(err.to_string().contains("does not exist"));
    }
}
