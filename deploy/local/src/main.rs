//! `cargo run -p paybind-local`: the whole system in one process, on its
//! embedded default. Creates (once, under `dev-data/`) a development CA and
//! certificates, configs with fresh keys and SQLite databases; registers the
//! demo merchant at payment-svc and demo users at merchant-svc; prints every
//! endpoint and grpcurl lines that work as written.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context;
use clap::Parser;
use merchant_svc::domain::{NewUser, ShopError};
use paybind_shared::tls::dev as pki;
use paybind_shared::{ids::MerchantUserId, person::Phone};
use secrecy::ExposeSecret;

#[derive(Parser)]
#[command(
    name = "paybind-local",
    about = "Runs payment-svc and merchant-svc locally on SQLite"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Prepares DIR for services that run apart (docker-compose's one-shot
    /// job): the development CA and certificates, both configurations with
    /// their keys, the demo merchant registered at payment-svc and the demo
    /// users at merchant-svc, in the databases PAYMENT__DATABASE__URL and
    /// MERCHANT__DATABASE__URL name. Keeps what is there; then exits.
    Init {
        #[arg(long, default_value = "dev-data")]
        dir: PathBuf,
        /// The storefront's origin as browsers reach it (the demo
        /// merchant's pages return there and may be framed by it).
        #[arg(long, default_value = "http://localhost:8080")]
        storefront_url: String,
        /// Where payment-svc pushes the demo merchant's events: merchant-svc's
        /// gRPC address as payment-svc reaches it (its certificate names
        /// localhost and merchant-svc).
        #[arg(long, default_value = "https://localhost:50052")]
        notify_url: String,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Where certificates, configs, databases and the SMS outbox live.
    #[arg(long, default_value = "dev-data")]
    dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:50051")]
    payment_listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:50052")]
    merchant_listen: SocketAddr,
    /// The storefront (merchant-svc's pages). The demo merchant is
    /// registered, on first run, with the storefront's origin then.
    #[arg(long, default_value = "127.0.0.1:8080")]
    storefront_listen: SocketAddr,
    /// The binding pages (payment-svc's).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pages_listen: SocketAddr,
    /// payment-svc's Prometheus metrics (`/metrics`).
    #[arg(long, default_value = "127.0.0.1:9181")]
    payment_metrics_listen: SocketAddr,
    /// merchant-svc's Prometheus metrics (`/metrics`).
    #[arg(long, default_value = "127.0.0.1:9182")]
    merchant_metrics_listen: SocketAddr,
}

/// The operator certificate the banner's grpcurl lines use for merchant-svc.
const OPERATOR: &str = "operator";
const DEMO_USERS: &[(&str, &str, &str)] = &[
    ("alice", "Zhang San", "+8613800138000"),
    ("bob", "Li Si", "+8613900139000"),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = paybind_shared::telemetry::init("paybind-local", "info,sqlx=warn");
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Init {
            dir,
            storefront_url,
            notify_url,
        }) => init(&dir, &storefront_url, &notify_url).await,
        None => run(cli.run).await,
    };
    telemetry.shutdown();
    result
}

/// `paybind-local init`: what `run` prepares, for services that run apart.
async fn init(dir: &Path, storefront: &str, notify_url: &str) -> anyhow::Result<()> {
    let defaults = Cli::parse_from(["paybind-local"]).run;
    let setup = payment_svc::dev::prepare(dir, defaults.payment_listen)?;
    let payment_settings = payment_svc::config::Settings::load(Some(&setup.config_file))?;
    let payment_store =
        payment_svc::store::connect(payment_settings.database.url.expose_secret(), 2)
            .await
            .context("payment-svc's database")?;
    register_demo_merchant(payment_store.as_ref(), &setup, storefront, notify_url).await?;
    drop(payment_store);

    let mut merchant_settings = merchant_settings(
        dir,
        &setup.certs,
        defaults.merchant_listen,
        defaults.payment_listen,
        defaults.storefront_listen,
    )?;
    // Written as development defaults; the environment (the compose file)
    // names the real database.
    let file = dir.join("merchant.toml");
    merchant_settings.database = merchant_svc::config::Settings::load(Some(&file))?.database;
    let store = merchant_svc::store::connect(
        merchant_settings.database.url.expose_secret(),
        2,
        Arc::new(merchant_settings.secrets.vault()?),
    )
    .await
    .context("merchant-svc's database")?;
    let shop = merchant_svc::domain::Shop::new(
        store,
        Arc::new(merchant_svc::payment_client::PaymentClient::new(
            &merchant_settings.payment,
        )?),
        paybind_shared::money::Currency::parse(&merchant_settings.shop.currency)?,
        merchant_settings.shop.default_return_url.clone(),
        paybind_shared::metrics::Metrics::new().batches.clone(),
    );
    create_demo_users(&shop).await?;
    println!(
        "prepared {}: certificates in {}, payment.toml, merchant.toml; the demo merchant and users are registered",
        dir.display(),
        setup.certs.display()
    );
    Ok(())
}

/// Registers the demo merchant (once) and where its events are pushed (on
/// every start: the port may have changed).
async fn register_demo_merchant(
    store: &dyn payment_svc::store::Store,
    setup: &payment_svc::dev::DevSetup,
    storefront: &str,
    notify_url: &str,
) -> anyhow::Result<()> {
    let merchant = payment_svc::dev::demo_merchant_at(storefront)?;
    payment_svc::domain::merchants::ensure(
        store,
        &merchant,
        &paybind_shared::tls::PeerCertificate::from_pem_file(&setup.merchant_cert)?,
    )
    .await?;
    let endpoint = payment_svc::domain::deliveries::NotifyEndpoint::parse(notify_url, None)?;
    store
        .set_merchant_endpoint(
            &merchant.id,
            Some(&endpoint),
            paybind_shared::clock::now_ms(),
        )
        .await?;
    Ok(())
}

async fn create_demo_users(shop: &merchant_svc::domain::Shop) -> anyhow::Result<()> {
    for (id, name, phone) in DEMO_USERS {
        let user = NewUser {
            id: MerchantUserId::parse(id)?,
            display_name: (*name).to_owned(),
            phone: Some(Phone::parse(phone)?),
        };
        match shop.create_user(user).await {
            Ok(_) | Err(ShopError::UserExists) => {}
            Err(e) => return Err(e).context("creating demo users"),
        }
    }
    Ok(())
}

/// Both services in this process, until stopped.
async fn run(cli: RunArgs) -> anyhow::Result<()> {
    let setup = payment_svc::dev::prepare(&cli.dir, cli.payment_listen)?;
    let mut payment_settings = payment_svc::config::Settings::load(Some(&setup.config_file))?;
    payment_settings.web.listen = cli.pages_listen;
    payment_settings.metrics.listen = cli.payment_metrics_listen;
    payment_settings.public_base_url = format!("http://localhost:{}", cli.pages_listen.port());
    let payment = payment_svc::startup::App::build(payment_settings).await?;
    let services = payment.services();
    let storefront = format!("http://localhost:{}", cli.storefront_listen.port());

    let mut merchant_settings = merchant_settings(
        &cli.dir,
        &setup.certs,
        cli.merchant_listen,
        payment.grpc_addr(),
        cli.storefront_listen,
    )?;
    merchant_settings.metrics.listen = cli.merchant_metrics_listen;
    let merchant = merchant_svc::startup::App::build(merchant_settings).await?;
    let notify_url = format!("https://localhost:{}", merchant.grpc_addr().port());
    register_demo_merchant(services.store.as_ref(), &setup, &storefront, &notify_url).await?;
    create_demo_users(&merchant.shop()).await?;

    let web = Web {
        storefront: format!("http://localhost:{}/", merchant.web_addr().port()),
        pages: payment.public_base_url().to_owned(),
        metrics: [payment.metrics_addr(), merchant.metrics_addr()],
    };
    println!(
        "{}",
        banner(
            &cli.dir,
            &setup.certs,
            payment.grpc_addr(),
            merchant.grpc_addr(),
            &web
        )
    );
    let shutdown = tokio::sync::watch::channel(false);
    let (stop_tx, stop_rx) = shutdown;
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.changed().await;
    };
    let payment_task = payment.run_until_stopped(wait(stop_rx.clone()));
    let merchant_task = merchant.run_until_stopped(wait(stop_rx));
    let signal = async move {
        paybind_shared::shutdown_signal().await;
        let _ = stop_tx.send(true);
        Ok::<(), anyhow::Error>(())
    };
    tokio::try_join!(payment_task, merchant_task, signal)?;
    Ok(())
}

/// merchant-svc's development settings: its server certificate, the demo
/// merchant's client certificate at payment-svc, its SQLite database. Also
/// written to `merchant.toml`, to run merchant-svc on its own with them.
fn merchant_settings(
    dir: &Path,
    certs: &Path,
    listen: SocketAddr,
    payment: SocketAddr,
    storefront: SocketAddr,
) -> anyhow::Result<merchant_svc::config::Settings> {
    pki::ensure_server(
        certs,
        "merchant-svc",
        &["localhost", "127.0.0.1", "merchant-svc"],
    )?;
    pki::ensure_client(certs, OPERATOR)?;
    let mut settings = merchant_svc::config::Settings::development(
        dir,
        certs,
        listen,
        payment,
        payment_svc::dev::DEMO_MERCHANT,
        OPERATOR,
    );
    settings.web.listen = storefront;
    // Sessions started over gRPC come back to the storefront too.
    settings.shop.default_return_url = format!("http://localhost:{}/", storefront.port());
    // The keys that sealed the tokens already stored, and the storefront's
    // cookie key, are kept across runs.
    let file = dir.join("merchant.toml");
    if file.is_file() {
        match merchant_svc::config::Settings::load(Some(&file)) {
            Ok(previous) => {
                settings.secrets = previous.secrets;
                // Shoppers stay signed in across restarts.
                if previous.web.cookie_key.is_some() {
                    settings.web.cookie_key = previous.web.cookie_key;
                }
            }
            Err(e) => eprintln!("{} is unreadable ({e:#}); new token keys", file.display()),
        }
    }
    settings.validate()?;
    paybind_shared::config::write_toml(
        &file,
        "merchant-svc development configuration, written by paybind-local.",
        &settings,
    )?;
    Ok(settings)
}

/// Where browsers go: the shop, and payment-svc's binding pages; and
/// where Prometheus scrapes (payment-svc, merchant-svc).
struct Web {
    storefront: String,
    pages: String,
    metrics: [SocketAddr; 2],
}

fn banner(
    dir: &Path,
    certs: &Path,
    payment: SocketAddr,
    merchant: SocketAddr,
    web: &Web,
) -> String {
    let c = certs.display();
    let d = dir.display();
    let Web {
        storefront,
        pages,
        metrics: [payment_metrics, merchant_metrics],
    } = web;
    format!(
        r#"
paybind is running (development, SQLite, mTLS everywhere):
  storefront    {storefront}   open it in a browser: sign up, bind a card, buy
  binding page  {pages}/bind/…   (payment-svc; the codes sent: {pages}/dev/sms-outbox)
  payment-svc   {payment}   paybind.payment.v1.BindingService  (as the demo merchant: {c}/demo-shop.pem)
  merchant-svc  {merchant}   paybind.merchant.v1.MerchantService (as an operator: {c}/{OPERATOR}.pem)
  metrics       http://{payment_metrics}/metrics (payment-svc), http://{merchant_metrics}/metrics (merchant-svc)
  data:         {d}/  (databases, configs, certificates; SMS codes in {d}/sms-outbox.jsonl)
  demo users:   alice, bob (no card on file yet)

Try it:
  MS="grpcurl -cacert {c}/ca.pem -cert {c}/{OPERATOR}.pem -key {c}/{OPERATOR}-key.pem"
  $MS localhost:{mport} list
  $MS -d '{{"user_id":"alice"}}' localhost:{mport} paybind.merchant.v1.MerchantService/GetUser
  $MS -d '{{"user_id":"alice","amount":{{"amount_minor":"1999","currency":"CNY"}},"description":"Green tea","idempotency_key":"checkout-1"}}' localhost:{mport} paybind.merchant.v1.MerchantService/Checkout
(README.md walks through bind -> pay -> BindAndPay -> refund -> remove card.)
"#,
        mport = merchant.port(),
    )
}
