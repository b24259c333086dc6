//! paybind as an operator runs it: payment-svc and merchant-svc as their own
//! processes (their binaries beside the running one: build them first), each
//! with its own fresh database (SQLite files, or PostgreSQL databases made
//! for the run and dropped after), development certificates, the merchant
//! `load-shop` registered. For the load generator and the fault suite, which
//! stop, kill, pause and restart the processes.
use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::Context;
use paybind_proto::{
    merchant::v1::{self as mpb, merchant_service_client::MerchantServiceClient},
    payment::v1::{self as pb, binding_service_client::BindingServiceClient},
};
use paybind_shared::{
    config::{write_toml, DatabaseSettings},
    tls::{dev as pki, TlsFiles},
};
use sqlx::{Connection, Executor};
use tonic::transport::{Channel, Endpoint};

use crate::{
    fixtures::{card, shopper},
    Backend,
};

/// The merchant every system registers; it may send card data itself.
pub const MERCHANT: &str = "load-shop";
/// The operator certificate allowed to call merchant-svc.
pub const OPERATOR: &str = "operator";

#[derive(Debug, Clone)]
pub struct SystemOptions {
    pub backend: Backend,
    /// The PostgreSQL server to make the databases on.
    pub postgres: String,
    /// Database connections of each service.
    pub db_connections: u32,
    /// The auth-free daily limit of each binding, minor units.
    pub daily_limit: i64,
    /// More environment for both processes (e.g. `OTEL_*`).
    pub env: Vec<(String, String)>,
}

/// A running process; killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How to reach the services: cheap to clone, for tasks that call them
/// while the `System` kills and restarts them.
#[derive(Clone)]
pub struct Endpoints {
    pub payment_port: u16,
    pub merchant_port: u16,
    pub shop_tls: TlsFiles,
    pub operator_tls: TlsFiles,
}

impl Endpoints {
    pub fn channel(&self, tls: &TlsFiles, port: u16) -> anyhow::Result<Channel> {
        Ok(Endpoint::from_shared(format!("https://localhost:{port}"))?
            .tls_config(tls.client_config("localhost")?)?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .connect_lazy())
    }

    /// A client of payment-svc, as the merchant.
    pub fn payment_client(&self) -> anyhow::Result<BindingServiceClient<Channel>> {
        Ok(BindingServiceClient::new(
            self.channel(&self.shop_tls, self.payment_port)?,
        ))
    }

    /// A client of merchant-svc, as an operator.
    pub fn shop_client(&self) -> anyhow::Result<MerchantServiceClient<Channel>> {
        Ok(MerchantServiceClient::new(
            self.channel(&self.operator_tls, self.merchant_port)?,
        ))
    }
}

pub struct System {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub payment_db: String,
    pub merchant_db: String,
    pub payment_port: u16,
    pub merchant_port: u16,
    /// Where each serves `GET /metrics`.
    pub payment_metrics_port: u16,
    pub merchant_metrics_port: u16,
    /// merchant-svc's storefront (HTTP).
    pub storefront_port: u16,
    /// The SMS outbox (codes) and the simulated card network's journal.
    pub outbox: PathBuf,
    pub acquirer_journal: PathBuf,
    pub shop_tls: TlsFiles,
    pub operator_tls: TlsFiles,
    payment_config: PathBuf,
    merchant_config: PathBuf,
    payment: Option<Proc>,
    merchant: Option<Proc>,
    postgres: String,
    created_databases: Vec<String>,
    env: Vec<(String, String)>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A service's binary, of the profile the running program was built with:
/// beside it (the load generator, the fault suite), or, for a test (in
/// `deps/`), one directory up — built there first if it is not yet (a
/// plain `cargo test` builds no other package's binaries).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("exe dir")?.to_path_buf();
    let in_test = dir.file_name().is_some_and(|d| d == "deps");
    if in_test {
        dir.pop();
    }
    let path = dir.join(name);
    if !path.is_file() && in_test {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--locked", "--bin", name, "-p", name]);
        if dir.file_name().is_some_and(|d| d == "release") {
            build.arg("--release");
        }
        let status = build.status().context("running cargo build")?;
        anyhow::ensure!(status.success(), "cargo build -p {name} failed");
    }
    anyhow::ensure!(
        path.is_file(),
        "{} not found: build it first (cargo build [--release] -p {name})",
        path.display()
    );
    Ok(path)
}

/// Resident memory of a process, in MB (0 if it is gone).
pub fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Sends `signal` (e.g. `STOP`, `CONT`) to a process, with kill(1).
pub fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}

/// The code in the newest message of the development SMS outbox.
pub fn last_code(outbox: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(outbox)?;
    let line = text.lines().last().context("no SMS sent")?;
    let after = line
        .split("[paybind] ")
        .nth(1)
        .context("no code in the SMS")?;
    Ok(after.chars().take_while(char::is_ascii_digit).collect())
}

impl System {
    /// Makes the databases, certificates and configs, registers the
    /// merchant, and starts both services.
    pub async fn start(options: SystemOptions) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let d = dir.path().to_path_buf();
        let certs = d.join("certs");
        pki::ensure_server(&certs, "payment-svc", &["localhost"])?;
        pki::ensure_server(&certs, "merchant-svc", &["localhost"])?;
        let shop_tls = pki::ensure_merchant(&certs, MERCHANT)?;
        let operator_tls = pki::ensure_client(&certs, OPERATOR)?;

        let mut created_databases = Vec::new();
        let (payment_db, merchant_db) = match options.backend {
            Backend::Sqlite => (
                format!("sqlite:{}", d.join("payment.db").display()),
                format!("sqlite:{}", d.join("merchant.db").display()),
            ),
            Backend::Postgres => {
                let mut admin = sqlx::PgConnection::connect(&options.postgres).await?;
                let suffix = &paybind_shared::ids::new_id("x")[2..14];
                let base = options
                    .postgres
                    .rsplit_once('/')
                    .map(|(b, _)| b.to_owned())
                    .unwrap_or_default();
                let mut urls = Vec::new();
                for which in ["payment", "merchant"] {
                    let name = format!("paybind_run_{which}_{suffix}");
                    admin
                        .execute(format!("CREATE DATABASE {name}").as_str())
                        .await?;
                    urls.push(format!("{base}/{name}"));
                    created_databases.push(name);
                }
                (urls[0].clone(), urls[1].clone())
            }
        };
        let (payment_port, merchant_port) = (free_port()?, free_port()?);
        let (payment_metrics_port, merchant_metrics_port) = (free_port()?, free_port()?);
        let storefront_port = free_port()?;
        let localhost = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let db = options.db_connections;
        let mut payment = payment_svc::config::Settings::development(&d, localhost(payment_port));
        payment.public_base_url = "https://pay.example".into();
        // Pages are not what a system run exercises: any free port.
        payment.web.listen = localhost(0);
        payment.metrics.listen = localhost(payment_metrics_port);
        payment.database = DatabaseSettings::new(&payment_db, db);
        // A load test binds the same shopper's card for every worker.
        payment.velocity = crate::unlimited_velocity();
        // Notifications retried every second for a minute: a fault's
        // backlog is delivered before the invariants are checked.
        payment.notifications.retry_delays_secs = vec![1; 60];
        let outbox = payment.sms.outbox_file.clone().context("an SMS outbox")?;
        let acquirer_journal = payment
            .acquirer
            .journal_file
            .clone()
            .context("an acquirer journal")?;
        let payment_config = d.join("payment.toml");
        write_toml(&payment_config, "paybind-tests system", &payment)?;
        let mut merchant = merchant_svc::config::Settings::development(
            &d,
            &certs,
            localhost(merchant_port),
            localhost(payment_port),
            MERCHANT,
            OPERATOR,
        );
        merchant.database = DatabaseSettings::new(&merchant_db, db);
        merchant.shop.default_return_url = "https://shop.example/return".into();
        merchant.shop.settle_interval_ms = 500;
        merchant.web.listen = localhost(storefront_port);
        merchant.metrics.listen = localhost(merchant_metrics_port);
        let merchant_config = d.join("merchant.toml");
        write_toml(&merchant_config, "paybind-tests system", &merchant)?;

        register_merchant(
            &payment_db,
            options.daily_limit,
            &shop_tls.cert,
            &format!("https://localhost:{merchant_port}"),
        )
        .await?;
        let mut system = Self {
            backend: options.backend,
            dir,
            payment_db,
            merchant_db,
            payment_port,
            merchant_port,
            payment_metrics_port,
            merchant_metrics_port,
            storefront_port,
            outbox,
            acquirer_journal,
            shop_tls,
            operator_tls,
            payment_config,
            merchant_config,
            payment: None,
            merchant: None,
            postgres: options.postgres,
            created_databases,
            env: options.env,
        };
        system.start_payment(None).await?;
        system.start_merchant().await?;
        Ok(system)
    }

    fn spawn(&self, name: &str, config: &Path, fd_limit: Option<u64>) -> anyhow::Result<Proc> {
        let binary = sibling_binary(name)?;
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log")))?;
        let mut cmd = match fd_limit {
            // The open-files limit of the process (and its hard limit, so it
            // cannot raise it back): ulimit(1) in a shell that then execs.
            Some(limit) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        cmd.args(["--config", &config.display().to_string(), "serve"])
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            // Logs go to standard output, panics to standard error: both
            // kept, for a failing test to show.
            .stdout(log.try_clone()?)
            .stderr(log);
        Ok(Proc(cmd.spawn()?))
    }

    async fn wait_listening(port: u16) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "port {port} did not open");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Starts payment-svc (again), optionally under an open-files limit.
    pub async fn start_payment(&mut self, fd_limit: Option<u64>) -> anyhow::Result<()> {
        self.payment = Some(self.spawn("payment-svc", &self.payment_config, fd_limit)?);
        Self::wait_listening(self.payment_port).await
    }

    pub async fn start_merchant(&mut self) -> anyhow::Result<()> {
        self.merchant = Some(self.spawn("merchant-svc", &self.merchant_config, None)?);
        Self::wait_listening(self.merchant_port).await
    }

    /// `SERVICE health` (the container health check) with the service's
    /// own configuration: whether it exited 0.
    pub fn health_check(&self, service: &str) -> anyhow::Result<bool> {
        let config = match service {
            "payment-svc" => &self.payment_config,
            _ => &self.merchant_config,
        };
        let out = Command::new(sibling_binary(service)?)
            .args(["--config", &config.display().to_string(), "health"])
            .args(["--timeout-ms", "2000"])
            .output()?;
        Ok(out.status.success())
    }

    /// Stops both as an orchestrator does (SIGTERM), and waits for them to
    /// exit: requests in flight finish, buffered spans are flushed.
    pub fn terminate(&mut self) -> anyhow::Result<()> {
        for proc in [&mut self.merchant, &mut self.payment]
            .into_iter()
            .flatten()
        {
            signal(proc.0.id(), "TERM")?;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for slot in [&mut self.merchant, &mut self.payment] {
            if let Some(proc) = slot {
                while proc.0.try_wait()?.is_none() {
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "still running 20 s after SIGTERM"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            *slot = None;
        }
        Ok(())
    }

    /// `kill -9` of payment-svc: no shutdown of any kind.
    pub fn kill_payment(&mut self) {
        drop(self.payment.take());
    }

    pub fn kill_merchant(&mut self) {
        drop(self.merchant.take());
    }

    pub fn payment_pid(&self) -> Option<u32> {
        self.payment.as_ref().map(|p| p.0.id())
    }

    pub fn merchant_pid(&self) -> Option<u32> {
        self.merchant.as_ref().map(|p| p.0.id())
    }

    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            payment_port: self.payment_port,
            merchant_port: self.merchant_port,
            shop_tls: self.shop_tls.clone(),
            operator_tls: self.operator_tls.clone(),
        }
    }

    pub async fn channel(&self, tls: &TlsFiles, port: u16) -> anyhow::Result<Channel> {
        self.endpoints().channel(tls, port)
    }

    pub async fn payment_client(&self) -> anyhow::Result<BindingServiceClient<Channel>> {
        self.endpoints().payment_client()
    }

    pub async fn shop_client(&self) -> anyhow::Result<MerchantServiceClient<Channel>> {
        self.endpoints().shop_client()
    }

    /// Binds `card_number` for `user` at payment-svc by direct entry; the token.
    pub async fn bind_direct(&self, user: &str, card_number: &str) -> anyhow::Result<String> {
        self.bind_direct_as(&self.shop_tls, user, card_number).await
    }

    /// As [`Self::bind_direct`], as the merchant whose certificate is `tls`.
    pub async fn bind_direct_as(
        &self,
        tls: &TlsFiles,
        user: &str,
        card_number: &str,
    ) -> anyhow::Result<String> {
        let mut c = BindingServiceClient::new(self.channel(tls, self.payment_port).await?);
        let s = c
            .bind(pb::BindRequest {
                merchant_user_id: user.into(),
                presentation: pb::Presentation::Redirect as i32,
                return_url: "https://shop.example/return".into(),
                prefill: None,
                idempotency_key: format!("bind-{user}"),
            })
            .await?
            .into_inner()
            .session
            .context("session")?;
        c.submit_bind_info(pb::SubmitBindInfoRequest {
            session_id: s.session_id.clone(),
            shopper: Some(shopper("Zhang San")),
            card: Some(card(card_number)),
        })
        .await?;
        let done = c
            .verify_bind(pb::VerifyBindRequest {
                session_id: s.session_id,
                code: last_code(&self.outbox)?,
            })
            .await?
            .into_inner()
            .session
            .context("session")?;
        Ok(done.binding.context("binding")?.binding_token)
    }

    /// Creates `user` at the shop and binds `card_number` as its card on file.
    pub async fn bind_shopper(&self, user: &str, card_number: &str) -> anyhow::Result<()> {
        let mut m = self.shop_client().await?;
        m.create_user(mpb::CreateUserRequest {
            user_id: user.into(),
            display_name: "Load Tester".into(),
            phone: "+8613800138000".into(),
        })
        .await?;
        let started = m
            .start_binding(mpb::StartBindingRequest {
                user_id: user.into(),
                presentation: pb::Presentation::Redirect as i32,
                return_url: String::new(),
            })
            .await?
            .into_inner();
        m.submit_shopper_info(mpb::SubmitShopperInfoRequest {
            session_id: started.session_id.clone(),
            shopper: Some(shopper("Zhang San")),
            card: Some(card(card_number)),
        })
        .await?;
        m.verify_shopper_code(mpb::VerifyShopperCodeRequest {
            session_id: started.session_id,
            code: last_code(&self.outbox)?,
        })
        .await?;
        Ok(())
    }

    /// Registers one more merchant at the running payment-svc, with a
    /// certificate of its own and no notification endpoint (its events are
    /// kept for its feed, none pushed); its certificate.
    pub async fn add_merchant(&self, name: &str) -> anyhow::Result<TlsFiles> {
        let tls = pki::ensure_merchant(&self.dir.path().join("certs"), name)?;
        register_merchant_named(
            &self.payment_db,
            name,
            paybind_shared::money::MAX_AMOUNT_MINOR,
            &tls.cert,
            None,
        )
        .await?;
        Ok(tls)
    }

    /// Fills payment-svc's database up to `total` bindings (with their
    /// cards' usage rows) by copying one existing binding under new ids,
    /// users and card fingerprints: tables and indexes of a busy
    /// institution, for a benchmark to run against. The copies are never
    /// paid with. Written straight to the database, in chunks.
    pub async fn preload_bindings(&self, total: u64) -> anyhow::Result<u64> {
        const CHUNK: u64 = 50_000;
        let mut have = self.count_bindings().await?;
        let mut db = Db::connect(self.backend, &self.payment_db).await?;
        let columns = db
            .strings(match self.backend {
                Backend::Sqlite => "SELECT name FROM pragma_table_info('bindings')",
                Backend::Postgres => {
                    "SELECT column_name::text FROM information_schema.columns \
                     WHERE table_name = 'bindings' ORDER BY ordinal_position"
                }
            })
            .await?;
        // Row numbers: generate_series on PostgreSQL, a recursive CTE on SQLite.
        let series = match self.backend {
            Backend::Sqlite => {
                "WITH RECURSIVE n(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM n \
                 WHERE i < $2) SELECT i FROM n"
            }
            Backend::Postgres => "SELECT i FROM generate_series($1::bigint, $2::bigint) AS g(i)",
        };
        let copied = |column: &str| -> String {
            match column {
                "id" => "'bnd_preload_' || n.i".into(),
                "merchant_user_id" => "'preload-' || n.i".into(),
                "card_fingerprint" => "'preload-card-' || n.i".into(),
                other => format!("t.{other}"),
            }
        };
        let select: Vec<String> = columns.iter().map(|c| copied(c)).collect();
        let insert = format!(
            "INSERT INTO bindings ({}) SELECT {} FROM ({series}) n, \
             (SELECT * FROM bindings WHERE id NOT LIKE 'bnd_preload_%' LIMIT 1) t",
            columns.join(", "),
            select.join(", ")
        );
        let usage = format!(
            "INSERT INTO card_usage (merchant_id, card_fingerprint, usage_day, usage_amount) \
             SELECT t.merchant_id, 'preload-card-' || n.i, 0, 0 FROM ({series}) n, \
             (SELECT merchant_id FROM bindings LIMIT 1) t"
        );
        while have < total {
            let from = i64::try_from(have + 1)?;
            let to = i64::try_from((have + CHUNK).min(total))?;
            db.execute(&insert, from, to).await?;
            db.execute(&usage, from, to).await?;
            have = u64::try_from(to)?;
        }
        if self.backend == Backend::Postgres {
            // Planned with what is there now, as autovacuum would soon.
            db.execute("ANALYZE bindings", 0, 0).await?;
            db.execute("ANALYZE card_usage", 0, 0).await?;
        }
        self.count_bindings().await
    }

    /// How many bindings payment-svc's database holds.
    pub async fn count_bindings(&self) -> anyhow::Result<u64> {
        let mut db = Db::connect(self.backend, &self.payment_db).await?;
        let n = db
            .strings("SELECT CAST(COUNT(*) AS TEXT) FROM bindings")
            .await?;
        Ok(n.first().context("a count")?.parse()?)
    }

    /// Stops both services and drops the PostgreSQL databases made for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.kill_merchant();
        self.kill_payment();
        if !self.created_databases.is_empty() {
            let mut admin = sqlx::PgConnection::connect(&self.postgres).await?;
            for name in &self.created_databases {
                admin
                    .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await?;
            }
        }
        Ok(())
    }
}

/// Registers the merchant in payment-svc's database before it starts.
/// Registers the shop, with merchant-svc (at `notify_url`) taking its
/// notifications.
async fn register_merchant(
    payment_db: &str,
    daily_limit: i64,
    cert: &std::path::Path,
    notify_url: &str,
) -> anyhow::Result<()> {
    register_merchant_named(payment_db, MERCHANT, daily_limit, cert, Some(notify_url)).await
}

/// Registers merchant `name` (certificate identity = id), with its
/// notifications sent to `notify_url` if given (none made otherwise).
async fn register_merchant_named(
    payment_db: &str,
    name: &str,
    daily_limit: i64,
    cert: &std::path::Path,
    notify_url: Option<&str>,
) -> anyhow::Result<()> {
    use paybind_shared::money::{Currency, Money};
    let store = payment_svc::store::connect(payment_db, 2).await?;
    let cny = Currency::parse("CNY")?;
    payment_svc::domain::merchants::register(
        store.as_ref(),
        &payment_svc::domain::model::Merchant {
            id: paybind_shared::ids::MerchantId::parse(name)?,
            display_name: "Load Shop".into(),
            cert_identity: name.into(),
            status: payment_svc::domain::model::MerchantStatus::Enabled,
            allowed_origins: vec![],
            return_urls: vec!["https://shop.example/return".into()],
            direct_entry: true,
            currency: cny,
            limits: payment_svc::domain::model::Limits {
                per_payment: Money::new(50_000, cny)?,
                daily: Money::new(daily_limit, cny)?,
            },
            bind_and_pay_limit: Money::new(50_000, cny)?,
        },
        &paybind_shared::tls::PeerCertificate::from_pem_file(cert)?,
    )
    .await?;
    if let Some(url) = notify_url {
        store
            .set_merchant_endpoint(
                &paybind_shared::ids::MerchantId::parse(name)?,
                Some(&payment_svc::domain::deliveries::NotifyEndpoint::parse(
                    url, None,
                )?),
                paybind_shared::clock::now_ms(),
            )
            .await?;
    }
    Ok(())
}

/// A plain connection to either backend, for the few statements the
/// harness runs itself.
enum Db {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Db {
    async fn connect(backend: Backend, url: &str) -> anyhow::Result<Self> {
        Ok(match backend {
            Backend::Sqlite => {
                let options: sqlx::sqlite::SqliteConnectOptions = url.parse()?;
                Self::Sqlite(
                    sqlx::SqliteConnection::connect_with(
                        &options.busy_timeout(Duration::from_secs(30)),
                    )
                    .await?,
                )
            }
            Backend::Postgres => Self::Postgres(sqlx::PgConnection::connect(url).await?),
        })
    }

    /// Runs `sql`, binding `$1` and `$2` if it has them.
    async fn execute(&mut self, sql: &str, first: i64, second: i64) -> anyhow::Result<()> {
        let binds = sql.contains("$1");
        match self {
            Self::Sqlite(c) => {
                let q = sqlx::query(sql);
                let q = if binds { q.bind(first).bind(second) } else { q };
                q.execute(c).await?;
            }
            Self::Postgres(c) => {
                let q = sqlx::query(sql);
                let q = if binds { q.bind(first).bind(second) } else { q };
                q.execute(c).await?;
            }
        }
        Ok(())
    }

    async fn strings(&mut self, sql: &str) -> anyhow::Result<Vec<String>> {
        Ok(match self {
            Self::Sqlite(c) => sqlx::query_scalar(sql).fetch_all(c).await?,
            Self::Postgres(c) => sqlx::query_scalar(sql).fetch_all(c).await?,
        })
    }
}
