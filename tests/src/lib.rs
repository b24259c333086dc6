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
use paybind_proto::{
    merchant::v1::merchant_service_client::MerchantServiceClient,
    payment::v1::binding_service_client::BindingServiceClient,
};
use paybind_shared::{
    config::DatabaseSettings,
    ids::MerchantId,
    money::{Currency, Money},
    tls::{PeerCertificate, TlsFiles},
};
use payment_svc::{
    config::Settings,
    domain::{
        acquirer::Simulator,
        model::{Limits, Merchant, MerchantStatus},
        sms::DevOutbox,
    },
    startup::App,
};
use secrecy::ExposeSecret;
use sqlx::{Connection, Executor, PgConnection};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::transport::{Channel, Endpoint};

pub use paybind_proto::{merchant::v1 as mpb, payment::v1 as pb};

pub mod browser;
pub mod fixtures;
pub mod otlp;
mod proxy;
pub mod system;
pub use paybind_shared::grpc::{metadata_of, reason_of};
pub use proxy::PausableProxy;

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
/// The merchant behind the storefront of `Stack::start_with_storefront`:
/// registered with the storefront's origin, and not allowed direct entry
/// (its shoppers use the binding page).
pub const WEB_SHOP: &str = "web-shop";
/// Has a certificate from the CA but is not registered.
pub const UNREGISTERED: &str = "unregistered";
/// The operator certificate allowed to call merchant-svc in tests (admin).
pub const OPERATOR: &str = "operator";
/// merchant-svc operators with one role each (`[operators]`).
pub const READER: &str = "desk";
pub const STOREFRONT: &str = "storefront";
pub const FINANCE: &str = "finance";
/// Return URLs registered for every test merchant.
pub const RETURN_URL: &str = "https://shop.example/bind/return";
/// Every test merchant's auth-free limits, CNY minor units.
pub const PER_PAYMENT_LIMIT: i64 = 50_000;
pub const DAILY_LIMIT: i64 = 200_000;
/// The most a test merchant's BindAndPay may charge.
pub const BIND_AND_PAY_LIMIT: i64 = 100_000;

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
        #[allow(clippy::expect_used)]
        dev(&dir, "merchant-svc", &["localhost", "127.0.0.1"]).expect("merchant-svc cert");
        for identity in [SHOP_A, SHOP_B, SHOP_NO_DIRECT, UNREGISTERED, WEB_SHOP] {
            #[allow(clippy::expect_used)]
            paybind_shared::tls::dev::ensure_merchant(&dir, identity).expect("merchant cert");
        }
        for operator in [OPERATOR, READER, STOREFRONT, FINANCE] {
            #[allow(clippy::expect_used)]
            paybind_shared::tls::dev::ensure_client(&dir, operator).expect("operator cert");
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
    pub acquirer: Arc<Simulator>,
    pub db_file: Option<PathBuf>,
    /// payment-svc's settings, to start it again on the same database.
    settings: Settings,
    /// payment-svc's server and SMS outbox; replaced when it restarts.
    payment: std::sync::Mutex<PaymentServer>,
    pg_databases: Vec<String>,
    merchant: Option<MerchantPart>,
    _dir: tempfile::TempDir,
}

/// merchant-svc, when the stack runs it too.
struct MerchantPart {
    addr: std::net::SocketAddr,
    /// The storefront's origin, e.g. `http://127.0.0.1:41234`.
    storefront: String,
    db_url: String,
    /// merchant-svc reaches payment-svc through it.
    link: PausableProxy,
    /// Its settings, with the ports it got, to start it again there.
    settings: merchant_svc::config::Settings,
    /// The running server; `None` while stopped.
    running: std::sync::Mutex<Option<MerchantServer>>,
}

struct MerchantServer {
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<anyhow::Result<()>>,
}

async fn spawn_merchant(
    mut settings: merchant_svc::config::Settings,
) -> anyhow::Result<(merchant_svc::config::Settings, MerchantServer)> {
    let app = merchant_svc::startup::App::build(settings.clone()).await?;
    settings.grpc.listen = app.grpc_addr();
    settings.web.listen = app.web_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    Ok((
        settings,
        MerchantServer {
            shutdown: tx,
            server,
        },
    ))
}

struct PaymentServer {
    outbox: Arc<DevOutbox>,
    /// The running payment-svc's domain, for tests that drive its
    /// background passes at a time of their choosing.
    services: Arc<payment_svc::domain::Services>,
    /// Where the binding pages are, as browsers reach them.
    public_base_url: String,
    web_addr: std::net::SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

fn spawn_payment(app: App) -> anyhow::Result<PaymentServer> {
    let outbox = app.sms_outbox().context("tests configure the dev outbox")?;
    let services = app.services();
    let public_base_url = app.public_base_url().to_owned();
    let web_addr = app.web_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    Ok(PaymentServer {
        outbox,
        services,
        public_base_url,
        web_addr,
        shutdown: Some(tx),
        server: Some(server),
    })
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

/// An empty database of its own for a test: a SQLite file in a temporary
/// folder, or a fresh PostgreSQL database (dropped by `drop`).
pub struct ScratchDatabase {
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl ScratchDatabase {
    /// `None` (after saying so) when PostgreSQL is unavailable and not
    /// required.
    pub async fn create(backend: Backend) -> anyhow::Result<Option<Self>> {
        Ok(match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir()?;
                Some(Self {
                    url: format!("sqlite:{}", dir.path().join("scratch.db").display()),
                    pg_name: None,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => fresh_postgres_database().await?.map(|(url, name)| Self {
                url,
                pg_name: Some(name),
                _dir: None,
            }),
        })
    }

    pub async fn drop(self) -> anyhow::Result<()> {
        if let Some(name) = self.pg_name {
            let mut admin = PgConnection::connect(&postgres_admin_url()).await?;
            admin
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await?;
        }
        Ok(())
    }
}

fn hex_id() -> String {
    paybind_shared::ids::new_id("x")[2..18].to_owned()
}

impl Stack {
    /// Starts payment-svc on `backend`; `None` if PostgreSQL is unavailable
    /// and not required (the test then passes as skipped, having said so).
    pub async fn start(backend: Backend) -> anyhow::Result<Option<Self>> {
        Self::start_tuned(backend, |_| {}).await
    }

    /// As `start`, with payment-svc's settings changed by `tune` first.
    pub async fn start_tuned(
        backend: Backend,
        tune: impl FnOnce(&mut Settings),
    ) -> anyhow::Result<Option<Self>> {
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
        let pg_databases = pg_database.into_iter().collect();
        let mut settings = test_settings(&db_url, &pki.server, dir.path());
        tune(&mut settings);
        settings.validate()?;
        let app = App::build(settings.clone()).await?;
        let services = app.services();
        for (identity, direct_entry) in [(SHOP_A, true), (SHOP_B, true), (SHOP_NO_DIRECT, false)] {
            payment_svc::domain::merchants::register(
                services.store.as_ref(),
                &merchant(identity, direct_entry)?,
                &PeerCertificate::from_pem_file(&pki.client_files(identity).cert)?,
            )
            .await?;
        }
        let addr = app.grpc_addr();
        let acquirer = app.acquirer();
        let payment = std::sync::Mutex::new(spawn_payment(app)?);
        Ok(Some(Self {
            backend,
            addr,
            acquirer,
            db_file,
            settings,
            payment,
            pg_databases,
            merchant: None,
            _dir: dir,
        }))
    }

    /// Starts payment-svc and merchant-svc (its own database on the same
    /// backend), merchant-svc calling payment-svc as `SHOP_A`.
    pub async fn start_with_merchant(backend: Backend) -> anyhow::Result<Option<Self>> {
        let Some(stack) = Self::start(backend).await? else {
            return Ok(None);
        };
        stack.add_merchant_svc(SHOP_A, None).await
    }

    /// Starts payment-svc and merchant-svc with its storefront, as a
    /// shopper's browser finds them: merchant-svc calls payment-svc as
    /// `WEB_SHOP`, registered with the storefront's origin and return URL
    /// (and no direct entry), and with `tune`'s changes to its limits.
    pub async fn start_with_storefront(
        backend: Backend,
        tune: impl Fn(&mut Merchant),
    ) -> anyhow::Result<Option<Self>> {
        // The storefront's port is chosen before merchant-svc binds it (its
        // URL is in the merchant's registration): another test may take it
        // in between. Then the whole stack is started again.
        for _ in 0..2 {
            match Self::start_with_storefront_once(backend, &tune).await {
                Err(e) if format!("{e:#}").contains("Address already in use") => {
                    eprintln!("the storefront's port was taken meanwhile; starting again: {e:#}");
                }
                done => return done,
            }
        }
        Self::start_with_storefront_once(backend, &tune).await
    }

    async fn start_with_storefront_once(
        backend: Backend,
        tune: &impl Fn(&mut Merchant),
    ) -> anyhow::Result<Option<Self>> {
        let Some(stack) = Self::start(backend).await? else {
            return Ok(None);
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let storefront = format!("http://127.0.0.1:{port}");
        let mut web_shop = merchant(WEB_SHOP, false)?;
        web_shop.display_name = "Tea House".into();
        web_shop.allowed_origins = vec![storefront.clone()];
        web_shop.return_urls = vec![format!("{storefront}/")];
        tune(&mut web_shop);
        let pki = pki();
        {
            let payment = stack.payment_settings();
            let store =
                payment_svc::store::connect(payment.database.url.expose_secret(), 2).await?;
            payment_svc::domain::merchants::register(
                store.as_ref(),
                &web_shop,
                &PeerCertificate::from_pem_file(&pki.client_files(WEB_SHOP).cert)?,
            )
            .await?;
        }
        stack.add_merchant_svc(WEB_SHOP, Some(port)).await
    }

    /// The storefront's origin (`start_with_storefront`).
    pub fn storefront(&self) -> anyhow::Result<String> {
        Ok(self
            .merchant
            .as_ref()
            .context("merchant-svc is not running")?
            .storefront
            .clone())
    }

    /// payment-svc's binding pages, as browsers reach them.
    pub fn pages(&self) -> String {
        self.lock_payment().public_base_url.clone()
    }

    async fn add_merchant_svc(
        self,
        identity: &str,
        storefront_port: Option<u16>,
    ) -> anyhow::Result<Option<Self>> {
        let backend = self.backend;
        let mut stack = self;
        let db_url = match backend {
            Backend::Sqlite => {
                format!("sqlite:{}", stack._dir.path().join("merchant.db").display())
            }
            Backend::Postgres => match fresh_postgres_database().await? {
                Some((url, name)) => {
                    stack.pg_databases.push(name);
                    url
                }
                None => return Ok(None),
            },
        };
        let pki = pki();
        let link = PausableProxy::start(stack.addr).await?;
        let client = |name: &str| pki.client_files(name);
        let settings = merchant_svc::config::Settings {
            environment: paybind_shared::config::Environment::Development,
            grpc: merchant_svc::config::GrpcSettings {
                listen: "127.0.0.1:0".parse()?,
            },
            server: Default::default(),
            metrics: paybind_shared::metrics::MetricsSettings::local(0),
            database: DatabaseSettings::new(db_url, 8),
            tls: client("merchant-svc"),
            operators: {
                use merchant_svc::grpc::Role;
                std::collections::BTreeMap::from([
                    (OPERATOR.to_owned(), vec![Role::Admin]),
                    (READER.to_owned(), vec![Role::Read]),
                    (STOREFRONT.to_owned(), vec![Role::Read, Role::Checkout]),
                    (FINANCE.to_owned(), vec![Role::Refund]),
                ])
            },
            allowed_clients: None,
            payment: merchant_svc::config::PaymentSettings {
                endpoint: format!("https://localhost:{}", link.addr.port()),
                server_name: "localhost".into(),
                tls: client(identity),
                timeout_ms: 2000,
                attempts: 3,
                overall_timeout_ms: 6000,
                quick_timeout_ms: 300,
                notifier_name: "payment-svc".into(),
            },
            secrets: merchant_svc::config::Secrets::generate(),
            shop: merchant_svc::config::ShopSettings {
                currency: "CNY".into(),
                default_return_url: match storefront_port {
                    Some(port) => format!("http://127.0.0.1:{port}/bound"),
                    None => RETURN_URL.into(),
                },
                settle_interval_ms: 200,
            },
            web: merchant_svc::config::WebSettings {
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], storefront_port.unwrap_or(0))),
                public_url: storefront_port.map(|port| format!("http://127.0.0.1:{port}")),
                cookie_key: None,
            },
        };
        settings.validate()?;
        let settings_db_url = settings.database.url.expose_secret().to_owned();
        let (settings, running) = spawn_merchant(settings).await?;
        let addr = settings.grpc.listen;
        // payment-svc pushes the merchant's events to merchant-svc, as an
        // operator sets it up (`payment-svc merchant set-notify`).
        stack
            .admin(payment_svc::admin::MerchantCommand::SetNotify {
                id: identity.to_owned(),
                url: format!("https://localhost:{}", addr.port()),
                server_name: None,
            })
            .await?;
        let storefront = format!("http://127.0.0.1:{}", settings.web.listen.port());
        stack.merchant = Some(MerchantPart {
            addr,
            storefront,
            db_url: settings_db_url,
            link,
            settings,
            running: std::sync::Mutex::new(Some(running)),
        });
        Ok(Some(stack))
    }

    /// A client of merchant-svc presenting `identity`'s certificate.
    pub async fn merchant_client(
        &self,
        identity: &str,
    ) -> anyhow::Result<MerchantServiceClient<Channel>> {
        Ok(MerchantServiceClient::new(
            channel_to(self.merchant_addr()?, identity).await?,
        ))
    }

    /// payment-svc's database, for tests that look at (or tamper with) what
    /// is stored.
    pub fn payment_db_url(&self) -> String {
        self.settings.database.url.expose_secret().to_owned()
    }

    /// merchant-svc's database.
    pub fn merchant_db_url(&self) -> anyhow::Result<String> {
        Ok(self
            .merchant
            .as_ref()
            .context("merchant-svc is not running")?
            .db_url
            .clone())
    }

    /// Stops every byte between merchant-svc and payment-svc (connections
    /// stay open), as a paused payment-svc or a silent network would.
    pub fn pause_payment_link(&self) -> anyhow::Result<()> {
        self.merchant
            .as_ref()
            .context("merchant-svc is not running")?
            .link
            .pause();
        Ok(())
    }

    pub fn resume_payment_link(&self) -> anyhow::Result<()> {
        self.merchant
            .as_ref()
            .context("merchant-svc is not running")?
            .link
            .resume();
        Ok(())
    }

    /// Stops merchant-svc (its database stays), as an outage of the shop.
    pub async fn stop_merchant(&self) -> anyhow::Result<()> {
        let part = self.merchant.as_ref().context("no merchant-svc")?;
        let running = part
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(running) = running {
            let _ = running.shutdown.send(());
            running.server.await??;
        }
        Ok(())
    }

    /// Starts merchant-svc again on its ports and database.
    pub async fn restart_merchant(&self) -> anyhow::Result<()> {
        let part = self.merchant.as_ref().context("no merchant-svc")?;
        let (_, running) = spawn_merchant(part.settings.clone()).await?;
        *part.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(running);
        Ok(())
    }

    /// The address merchant-svc serves on.
    pub fn merchant_addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        Ok(self
            .merchant
            .as_ref()
            .context("merchant-svc is not running")?
            .addr)
    }

    /// The running payment-svc's domain (its background passes can be run
    /// at a chosen time, e.g. the expiry of bindings next month).
    pub fn payment_services(&self) -> Arc<payment_svc::domain::Services> {
        self.lock_payment().services.clone()
    }

    /// payment-svc's development SMS outbox.
    pub fn outbox(&self) -> Arc<DevOutbox> {
        self.lock_payment().outbox.clone()
    }

    fn lock_payment(&self) -> std::sync::MutexGuard<'_, PaymentServer> {
        self.payment.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops payment-svc (its database stays), as an outage.
    pub async fn stop_payment(&self) -> anyhow::Result<()> {
        let (shutdown, server) = {
            let mut payment = self.lock_payment();
            (payment.shutdown.take(), payment.server.take())
        };
        if let Some(tx) = shutdown {
            let _ = tx.send(());
        }
        if let Some(server) = server {
            server.await??;
        }
        Ok(())
    }

    /// Starts payment-svc again on the same port and database, with the same
    /// acquirer ledger.
    pub async fn restart_payment(&self) -> anyhow::Result<()> {
        let mut settings = self.settings.clone();
        settings.grpc.listen = self.addr;
        // The pages come back where browsers had them.
        let (web_addr, public) = {
            let payment = self.lock_payment();
            (payment.web_addr, payment.public_base_url.clone())
        };
        settings.web.listen = web_addr;
        settings.public_base_url = public;
        let app = App::build_with_acquirer(settings, self.acquirer.clone()).await?;
        *self.lock_payment() = spawn_payment(app)?;
        Ok(())
    }

    /// A second payment-svc on the same database (its own port, pools and
    /// caches), as another replica behind a load balancer; stopped when
    /// dropped.
    pub async fn start_replica(&self) -> anyhow::Result<Replica> {
        let mut settings = self.settings.clone();
        settings.grpc.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let app = App::build_with_acquirer(settings, self.acquirer.clone()).await?;
        let addr = app.grpc_addr();
        let server = spawn_payment(app)?;
        Ok(Replica { addr, server })
    }

    /// Runs `payment-svc merchant …` as an operator would, from its own
    /// connection to the database.
    pub async fn admin(&self, command: payment_svc::admin::MerchantCommand) -> anyhow::Result<()> {
        let store = payment_svc::store::connect(&self.payment_db_url(), 2).await?;
        payment_svc::admin::run(command, store.as_ref(), self.settings.environment).await
    }

    /// payment-svc's settings as the stack runs it.
    pub fn payment_settings(&self) -> &Settings {
        &self.settings
    }

    /// A client presenting `identity`'s certificate.
    pub async fn client(&self, identity: &str) -> anyhow::Result<BindingServiceClient<Channel>> {
        Ok(BindingServiceClient::new(
            channel_to(self.addr, identity).await?,
        ))
    }

    /// A client of payment-svc's event feed presenting `identity`'s certificate.
    pub async fn events_client(
        &self,
        identity: &str,
    ) -> anyhow::Result<pb::event_service_client::EventServiceClient<Channel>> {
        Ok(pb::event_service_client::EventServiceClient::new(
            channel_to(self.addr, identity).await?,
        ))
    }

    /// The one-time code most recently sent to `phone` (E.164).
    pub fn last_code(&self, phone: &str) -> anyhow::Result<String> {
        self.outbox()
            .last_code_to(phone)
            .context("no code was sent")
    }

    /// Stops the server and drops a PostgreSQL test database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if self.merchant.is_some() {
            self.stop_merchant().await?;
        }
        self.stop_payment().await?;
        for name in self.pg_databases.drain(..) {
            let mut admin = PgConnection::connect(&postgres_admin_url()).await?;
            admin
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await?;
        }
        Ok(())
    }
}

/// Another payment-svc of a [`Stack`], on the same database.
pub struct Replica {
    pub addr: std::net::SocketAddr,
    server: PaymentServer,
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(tx) = self.server.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// An mTLS channel to a service at `addr`, presenting `identity`'s
/// certificate.
pub async fn channel_to(addr: std::net::SocketAddr, identity: &str) -> anyhow::Result<Channel> {
    let tls = pki().client_files(identity).client_config("localhost")?;
    Ok(
        Endpoint::from_shared(format!("https://localhost:{}", addr.port()))?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect()
            .await?,
    )
}

/// Sends `body` as the request message of `path` (e.g.
/// `/paybind.payment.v1.BindingService/Bind`) exactly as given: for tests of
/// what a server does with bytes no generated client would send.
pub async fn raw_call(
    channel: Channel,
    path: &'static str,
    body: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static(path);
    Ok(grpc
        .unary(tonic::Request::new(body), path, RawCodec)
        .await?
        .into_inner())
}

/// A codec that passes message bytes through untouched.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let len = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, len).to_vec()))
    }
}

fn merchant(identity: &str, direct_entry: bool) -> anyhow::Result<Merchant> {
    let cny = Currency::parse("CNY")?;
    Ok(Merchant {
        id: MerchantId::parse(identity)?,
        display_name: format!("Test {identity}"),
        cert_identity: identity.to_owned(),
        status: MerchantStatus::Enabled,
        allowed_origins: vec!["https://shop.example".into()],
        return_urls: vec![RETURN_URL.into()],
        direct_entry,
        currency: cny,
        limits: Limits {
            per_payment: Money::new(PER_PAYMENT_LIMIT, cny)?,
            daily: Money::new(DAILY_LIMIT, cny)?,
        },
        bind_and_pay_limit: Money::new(BIND_AND_PAY_LIMIT, cny)?,
    })
}

/// payment-svc for a test: the development settings (fresh keys, the SMS
/// outbox under `dir`) on its own database, with the test PKI's server
/// certificate, on a free port.
fn test_settings(db_url: &str, server: &TlsFiles, dir: &Path) -> Settings {
    let mut settings = Settings::development(dir, std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    // The pages on a free port, at the address browsers reach.
    settings.web.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    settings.public_base_url = "http://127.0.0.1:0".into();
    settings.database = DatabaseSettings::new(db_url, 8);
    settings.tls = server.clone();
    settings.velocity = unlimited_velocity();
    // Notifications retried after 1 s, twice, then given up: a test sees
    // the whole schedule in seconds (the default spans more than a day).
    settings.notifications.retry_delays_secs = vec![1, 1];
    settings
}

/// A `NotificationService` of a test's own, in place of merchant-svc:
/// records every event it is sent (event id, resource, attempt, and the
/// size of the `NotifyBatch` it came in) in arrival order, and refuses the
/// first `refuse_first_attempts` attempts of each event (or every attempt,
/// with `u32::MAX`). Unless started with [`Recorder::start_batching`], it
/// answers `NotifyBatch` with UNIMPLEMENTED, as a merchant that takes one
/// event per call does.
pub struct Recorder {
    pub addr: std::net::SocketAddr,
    pub calls: Arc<std::sync::Mutex<Vec<RecordedCall>>>,
    stop: Option<oneshot::Sender<()>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    pub event_id: String,
    pub resource_id: String,
    pub resource_version: i64,
    pub attempt: i32,
    pub acknowledged: bool,
    /// How many events the `NotifyBatch` it came in held; 0 for `Notify`.
    pub batch: usize,
}

struct RecorderService {
    calls: Arc<std::sync::Mutex<Vec<RecordedCall>>>,
    refuse_first_attempts: u32,
    /// How long each answer takes.
    delay: Duration,
    takes_batches: bool,
}

impl RecorderService {
    /// Records one event; whether it is acknowledged.
    fn record(&self, event: &pb::Event, attempt: i32, batch: usize) -> bool {
        let acknowledged = u32::try_from(attempt).unwrap_or(0) > self.refuse_first_attempts;
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(RecordedCall {
                event_id: event.event_id.clone(),
                resource_id: event.resource_id.clone(),
                resource_version: event.resource_version,
                attempt,
                acknowledged,
                batch,
            });
        acknowledged
    }
}

#[tonic::async_trait]
impl mpb::notification_service_server::NotificationService for RecorderService {
    async fn notify(
        &self,
        request: tonic::Request<mpb::NotifyRequest>,
    ) -> Result<tonic::Response<mpb::NotifyResponse>, tonic::Status> {
        let mpb::NotifyRequest { event, attempt } = request.into_inner();
        let event = event.ok_or_else(|| tonic::Status::invalid_argument("no event"))?;
        tokio::time::sleep(self.delay).await;
        if self.record(&event, attempt, 0) {
            Ok(tonic::Response::new(mpb::NotifyResponse {}))
        } else {
            Err(tonic::Status::internal(
                "the test shop refuses this attempt",
            ))
        }
    }

    async fn notify_batch(
        &self,
        request: tonic::Request<mpb::NotifyBatchRequest>,
    ) -> Result<tonic::Response<mpb::NotifyBatchResponse>, tonic::Status> {
        if !self.takes_batches {
            return Err(tonic::Status::unimplemented("one event per call"));
        }
        let notifications = request.into_inner().notifications;
        tokio::time::sleep(self.delay).await;
        let size = notifications.len();
        let mut all = true;
        for n in notifications {
            let event = n
                .event
                .ok_or_else(|| tonic::Status::invalid_argument("no event"))?;
            all &= self.record(&event, n.attempt, size);
        }
        if all {
            Ok(tonic::Response::new(mpb::NotifyBatchResponse {}))
        } else {
            Err(tonic::Status::internal(
                "the test shop refuses this attempt",
            ))
        }
    }
}

impl Recorder {
    /// Serves on a free port with merchant-svc's test certificate.
    pub async fn start(refuse_first_attempts: u32) -> anyhow::Result<Self> {
        Self::start_slow(refuse_first_attempts, Duration::ZERO).await
    }

    /// As [`Self::start`], taking `NotifyBatch` too (and refusing nothing).
    pub async fn start_batching() -> anyhow::Result<Self> {
        Self::serve(0, Duration::ZERO, true).await
    }

    /// As [`Self::start`], each answer `delay` late.
    pub async fn start_slow(refuse_first_attempts: u32, delay: Duration) -> anyhow::Result<Self> {
        Self::serve(refuse_first_attempts, delay, false).await
    }

    async fn serve(
        refuse_first_attempts: u32,
        delay: Duration,
        takes_batches: bool,
    ) -> anyhow::Result<Self> {
        let tls = pki().client_files("merchant-svc").server_config()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let service = RecorderService {
            calls: calls.clone(),
            refuse_first_attempts,
            delay,
            takes_batches,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder()
                .tls_config(tls)?
                .add_service(
                    mpb::notification_service_server::NotificationServiceServer::new(service),
                )
                .serve_with_incoming_shutdown(
                    paybind_shared::grpc::incoming(listener, &Default::default()),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );
        Ok(Self {
            addr,
            calls,
            stop: Some(stop),
        })
    }

    pub fn calls(&self) -> Vec<RecordedCall> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Velocity limits no test reaches by accident: the suite's one shopper
/// binds cards far more often than a real one would. Tests of the limits
/// (`tests/velocity.rs`) set their own.
pub fn unlimited_velocity() -> payment_svc::domain::velocity::VelocityLimits {
    payment_svc::domain::velocity::VelocityLimits {
        card_checks_per_merchant_per_minute: 1_000_000,
        card_checks_per_card_per_day: 1_000_000,
        codes_per_merchant_per_minute: 1_000_000,
        codes_per_phone_per_hour: 1_000_000,
        code_tries_per_session: 1_000_000,
        code_tries_per_phone_per_day: 1_000_000,
    }
}

/// The text columns of every row `sql` selects from the database at `url`
/// (SQLite or PostgreSQL): what a test reads behind a service's back.
pub async fn text_rows(url: &str, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
    use sqlx::Row;
    fn texts<R: Row>(row: &R) -> anyhow::Result<Vec<String>>
    where
        for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        usize: sqlx::ColumnIndex<R>,
    {
        (0..row.len())
            .map(|i| Ok(row.try_get::<String, _>(i)?))
            .collect()
    }
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        let rows = sqlx::query(sql).fetch_all(&mut conn).await?;
        rows.iter().map(texts).collect()
    } else {
        let mut conn = PgConnection::connect(url).await?;
        let rows = sqlx::query(sql).fetch_all(&mut conn).await?;
        rows.iter().map(texts).collect()
    }
}

/// Runs one statement on the database at `url` behind the service's back
/// (to age a row, say); the number of rows it changed.
pub async fn execute_sql(url: &str, sql: &str) -> anyhow::Result<u64> {
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        Ok(sqlx::query(sql).execute(&mut conn).await?.rows_affected())
    } else {
        let mut conn = PgConnection::connect(url).await?;
        Ok(sqlx::query(sql).execute(&mut conn).await?.rows_affected())
    }
}

/// The `ErrorInfo.reason` of a status, or "" if it has none.
pub fn reason(status: &tonic::Status) -> String {
    reason_of(status).unwrap_or_default()
}

/// An amount in CNY minor units, as the wire carries it.
pub fn cny(amount_minor: i64) -> Option<pb::Money> {
    Some(pb::Money {
        amount_minor,
        currency: "CNY".into(),
    })
}

/// A scenario: drives a running stack, returns whether it held.
pub type Scenario = for<'a> fn(
    &'a Stack,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = anyhow::Result<()>> + 'a>,
>;

/// Runs `scenario` on a fresh stack (with merchant-svc if asked), then stops
/// it; a PostgreSQL stack that cannot start (no server, not required) is a
/// skip, already reported.
pub async fn run_scenario(
    backend: Backend,
    with_merchant: bool,
    scenario: Scenario,
) -> anyhow::Result<()> {
    let stack = if with_merchant {
        Stack::start_with_merchant(backend).await?
    } else {
        Stack::start(backend).await?
    };
    let Some(stack) = stack else {
        return Ok(());
    };
    let result = scenario(&stack).await;
    stack.stop().await?;
    result
}

/// Declares each scenario function as a test on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    (with_merchant = $merchant:expr; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    $crate::run_scenario($crate::Backend::Sqlite, $merchant, |s| Box::pin(super::$name(s))).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    $crate::run_scenario($crate::Backend::Postgres, $merchant, |s| Box::pin(super::$name(s))).await
                }
            )*
        }
    };
}
