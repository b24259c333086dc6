//! The end-to-end harness: starts payment-svc for real — its own database
//! (a fresh SQLite file, or a fresh PostgreSQL database), a free port, mTLS
//! with freshly issued certificates — and hands out typed gRPC clients, one
//! per merchant certificate.
//!
//! PostgreSQL: `PAYBIND_TEST_POSTGRES` names the server (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). If it cannot be reached,
//! the PostgreSQL tests say so and are skipped, unless
//! `PAYBIND_REQUIRE_POSTGRES=1` (set by `.ci/run`), which makes them fail.
use std::{
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
    time::Duration,
};

use anyhow::Context;
use paybind_proto::payment::v1::binding_service_client::BindingServiceClient;
use paybind_shared::{money::Currency, tls::TlsFiles};
use payment_svc::{
    config::Settings,
    domain::{acquirer::Simulator, merchants::Merchant, sms::DevOutbox},
    startup::App,
};
use sqlx::{Connection, Executor, PgConnection};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::transport::{Channel, Endpoint};

pub use paybind_proto::payment::v1 as pb;
pub use paybind_shared::grpc::{metadata_of, reason_of};

/// Which database a stack runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The merchants every stack registers: certificate identity = merchant id.
pub const SHOP_A: &str = "shop-a";
pub const SHOP_B: &str = "shop-b";
/// Registered, but not allowed direct entry.
pub const SHOP_NO_DIRECT: &str = "shop-no-direct";
/// Has a certificate from the CA but is not registered.
pub const UNREGISTERED: &str = "unregistered";
/// Return URLs registered for every test merchant.
pub const RETURN_URL: &str = "https://shop.example/bind/return";
/// Every test merchant's auth-free limits, CNY minor units.
pub const PER_PAYMENT_LIMIT: i64 = 50_000;
pub const DAILY_LIMIT: i64 = 200_000;

/// Certificates shared by every stack of one test process.
pub struct Pki {
    pub dir: PathBuf,
    pub server: TlsFiles,
    _guard: tempfile::TempDir,
}

pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        #[allow(clippy::expect_used)]
        let guard = tempfile::tempdir().expect("temp dir for certificates");
        let dir = guard.path().to_path_buf();
        let dev = paybind_shared::tls::dev::ensure_server;
        #[allow(clippy::expect_used)]
        let server = dev(&dir, "payment-svc", &["localhost", "127.0.0.1"]).expect("server cert");
        for identity in [SHOP_A, SHOP_B, SHOP_NO_DIRECT, UNREGISTERED] {
            #[allow(clippy::expect_used)]
            paybind_shared::tls::dev::ensure_client(&dir, identity).expect("client cert");
        }
        Pki {
            dir,
            server,
            _guard: guard,
        }
    })
}

impl Pki {
    pub fn client_files(&self, identity: &str) -> TlsFiles {
        TlsFiles {
            ca_cert: self.dir.join("ca.pem"),
            cert: self.dir.join(format!("{identity}.pem")),
            key: self.dir.join(format!("{identity}-key.pem")),
        }
    }
}

/// A running payment-svc.
pub struct Stack {
    pub backend: Backend,
    pub addr: std::net::SocketAddr,
    pub outbox: Arc<DevOutbox>,
    pub acquirer: Arc<Simulator>,
    pub db_file: Option<PathBuf>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    pg_database: Option<String>,
    _dir: tempfile::TempDir,
}

fn postgres_admin_url() -> String {
    std::env::var("PAYBIND_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn postgres_required() -> bool {
    std::env::var("PAYBIND_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// Creates a fresh database on the test server; `None` (after saying so) if
/// the server is unreachable and not required.
async fn fresh_postgres_database() -> anyhow::Result<Option<(String, String)>> {
    let admin_url = postgres_admin_url();
    let mut admin = match PgConnection::connect(&admin_url).await {
        Ok(conn) => conn,
        Err(e) if !postgres_required() => {
            eprintln!(
                "SKIPPED: PostgreSQL tests: cannot reach {admin_url} ({e}). \
                 Set PAYBIND_TEST_POSTGRES to a server, or PAYBIND_REQUIRE_POSTGRES=1 to fail instead."
            );
            return Ok(None);
        }
        Err(e) => return Err(e).context("PostgreSQL is required (PAYBIND_REQUIRE_POSTGRES=1)"),
    };
    let name = format!("paybind_test_{}", hex_id());
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    admin.close().await?;
    let base = admin_url
        .rsplit_once('/')
        .map(|(base, _)| base.to_owned())
        .unwrap_or(admin_url);
    Ok(Some((format!("{base}/{name}"), name)))
}

fn hex_id() -> String {
    paybind_shared::ids::new_id("x")[2..18].to_owned()
}

impl Stack {
    /// Starts payment-svc on `backend`; `None` if PostgreSQL is unavailable
    /// and not required (the test then passes as skipped, having said so).
    pub async fn start(backend: Backend) -> anyhow::Result<Option<Self>> {
        paybind_shared::telemetry::init_for_tests();
        let pki = pki();
        let dir = tempfile::tempdir()?;
        let (db_url, pg_database, db_file) = match backend {
            Backend::Sqlite => {
                let file = dir.path().join("payment.db");
                (format!("sqlite:{}", file.display()), None, Some(file))
            }
            Backend::Postgres => match fresh_postgres_database().await? {
                Some((url, name)) => (url, Some(name), None),
                None => return Ok(None),
            },
        };
        let config = dir.path().join("payment.toml");
        std::fs::write(&config, test_config(&db_url, &pki.server, dir.path()))?;
        let settings = Settings::load(Some(&config))?;
        let app = App::build(settings).await?;
        let services = app.services();
        for (identity, direct_entry) in [(SHOP_A, true), (SHOP_B, true), (SHOP_NO_DIRECT, false)] {
            payment_svc::domain::merchants::register(
                services.store.as_ref(),
                &merchant(identity, direct_entry)?,
            )
            .await?;
        }
        let addr = app.grpc_addr();
        let outbox = app.sms_outbox().context("tests configure the dev outbox")?;
        let acquirer = app.acquirer();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        Ok(Some(Self {
            backend,
            addr,
            outbox,
            acquirer,
            db_file,
            shutdown: Some(tx),
            server: Some(server),
            pg_database,
            _dir: dir,
        }))
    }

    /// A client presenting `identity`'s certificate.
    pub async fn client(&self, identity: &str) -> anyhow::Result<BindingServiceClient<Channel>> {
        let tls = pki().client_files(identity).client_config("localhost")?;
        let channel = Endpoint::from_shared(format!("https://localhost:{}", self.addr.port()))?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect()
            .await?;
        Ok(BindingServiceClient::new(channel))
    }

    /// The one-time code most recently sent to `phone` (E.164).
    pub fn last_code(&self, phone: &str) -> anyhow::Result<String> {
        self.outbox.last_code_to(phone).context("no code was sent")
    }

    /// Stops the server and drops a PostgreSQL test database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await??;
        }
        if let Some(name) = self.pg_database.take() {
            let mut admin = PgConnection::connect(&postgres_admin_url()).await?;
            admin
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await?;
        }
        Ok(())
    }
}

fn merchant(identity: &str, direct_entry: bool) -> anyhow::Result<Merchant> {
    Ok(Merchant {
        id: identity.to_owned(),
        display_name: format!("Test {identity}"),
        cert_identity: identity.to_owned(),
        allowed_origins: vec!["https://shop.example".into()],
        return_urls: vec![RETURN_URL.into()],
        direct_entry,
        currency: Currency::parse("CNY")?,
        per_payment_limit: PER_PAYMENT_LIMIT,
        daily_limit: DAILY_LIMIT,
    })
}

fn test_config(db_url: &str, server: &TlsFiles, dir: &Path) -> String {
    use base64::{engine::general_purpose::STANDARD, Engine};
    let key = || STANDARD.encode(rand::random::<[u8; 32]>());
    format!(
        r#"environment = "development"
public_base_url = "https://pay.example"
[grpc]
listen = "127.0.0.1:0"
[database]
url = "{db_url}"
max_connections = 8
[tls]
ca_cert = "{ca}"
cert = "{cert}"
key = "{key_file}"
[sms]
provider = "dev-outbox"
outbox_file = "{outbox}"
[secrets]
active_vault_key = "k1"
token_key = "{t}"
fingerprint_key = "{f}"
otp_key = "{o}"
[secrets.vault_keys]
k1 = "{v}"
"#,
        ca = server.ca_cert.display(),
        cert = server.cert.display(),
        key_file = server.key.display(),
        outbox = dir.join("sms-outbox.jsonl").display(),
        t = key(),
        f = key(),
        o = key(),
        v = key(),
    )
}
