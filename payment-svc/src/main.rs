//! The payment-svc binary: serve, the development stack, and merchant admin.
use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

/// jemalloc, with its background threads on: memory freed after a burst (a
/// connection flood, a load peak) goes back to the operating system within
/// seconds, so the process returns to its baseline instead of keeping its
/// peak.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use paybind_shared::{
    ids::MerchantId,
    money::{Currency, Money},
};
use payment_svc::{
    config::Settings,
    dev,
    domain::{
        merchants::{self, Merchant},
        model::Limits,
    },
    startup::App,
    store,
};
use secrecy::ExposeSecret;

#[derive(Parser)]
#[command(name = "payment-svc", about = "paybind's payment institution service")]
struct Cli {
    /// Configuration file (TOML); PAYMENT__* environment variables override it.
    #[arg(long, global = true, env = "PAYMENT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC with the given configuration.
    Serve,
    /// Development: create certificates, keys and the demo merchant under
    /// DIR (kept across restarts), then serve on SQLite.
    Dev {
        #[arg(long, default_value = "dev-data")]
        dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
    },
    /// Register and list merchants.
    #[command(subcommand)]
    Merchant(MerchantCommand),
    /// Development: issue a client certificate for another merchant, signed
    /// by the development CA in DIR.
    DevCert {
        #[arg(long, default_value = "dev-data/certs")]
        dir: PathBuf,
        /// The certificate identity (subject CN) to register the merchant with.
        identity: String,
    },
}

#[derive(Subcommand)]
enum MerchantCommand {
    /// Register a merchant.
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// Subject CN of the merchant's client certificate.
        #[arg(long)]
        cert_identity: String,
        /// Origin allowed to embed the binding page (repeatable).
        #[arg(long = "origin")]
        origins: Vec<String>,
        /// Return URL prefix (repeatable, at least one).
        #[arg(long = "return-url", required = true)]
        return_urls: Vec<String>,
        /// Allow direct entry (the merchant sends card data itself).
        #[arg(long)]
        direct_entry: bool,
        #[arg(long, default_value = "CNY")]
        currency: String,
        /// Auth-free limit per payment, minor units.
        #[arg(long, default_value_t = 50_000)]
        per_payment: i64,
        /// Auth-free limit per day, minor units.
        #[arg(long, default_value_t = 200_000)]
        per_day: i64,
    },
    /// List merchants.
    List,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    paybind_shared::telemetry::init("info,sqlx=warn");
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(error = %e, "could not start the allocator's background threads");
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Serve => {
            let settings = Settings::load(cli.config.as_deref())?;
            App::build(settings)
                .await?
                .run_until_stopped(paybind_shared::shutdown_signal())
                .await
        }
        Command::Dev { dir, listen } => {
            let setup = dev::prepare(&dir, listen)?;
            let settings = Settings::load(Some(&setup.config_file))?;
            let store = store::connect(settings.database.url.expose_secret(), 2).await?;
            if merchants::ensure(store.as_ref(), &dev::demo_merchant()?).await? {
                tracing::info!(
                    merchant = dev::DEMO_MERCHANT,
                    "registered the demo merchant"
                );
            }
            drop(store);
            let app = App::build(settings).await?;
            println!("{}", dev::banner(&setup, app.grpc_addr()));
            app.run_until_stopped(paybind_shared::shutdown_signal())
                .await
        }
        Command::DevCert { dir, identity } => {
            let files = paybind_shared::tls::dev::ensure_client(&dir, &identity)?;
            println!(
                "certificate: {}\nkey:         {}",
                files.cert.display(),
                files.key.display()
            );
            Ok(())
        }
        Command::Merchant(cmd) => {
            let settings = Settings::load(cli.config.as_deref())?;
            let store = store::connect(settings.database.url.expose_secret(), 2).await?;
            match cmd {
                MerchantCommand::Add {
                    id,
                    name,
                    cert_identity,
                    origins,
                    return_urls,
                    direct_entry,
                    currency,
                    per_payment,
                    per_day,
                } => {
                    let currency = Currency::parse(&currency).context("--currency")?;
                    let merchant = Merchant {
                        id: MerchantId::parse(&id).context("--id")?,
                        display_name: name,
                        cert_identity,
                        allowed_origins: origins,
                        return_urls,
                        direct_entry,
                        currency,
                        limits: Limits {
                            per_payment: Money::new(per_payment, currency)
                                .context("--per-payment")?,
                            daily: Money::new(per_day, currency).context("--per-day")?,
                        },
                    };
                    merchants::register(store.as_ref(), &merchant).await?;
                    println!("registered merchant {}", merchant.id);
                }
                MerchantCommand::List => {
                    for m in store.list_merchants().await? {
                        println!(
                            "{}\t{}\tcert={}\tdirect_entry={}\tcurrency={}\tauth-free: {} per payment, {} per day",
                            m.id,
                            m.display_name,
                            m.cert_identity,
                            m.direct_entry,
                            m.currency,
                            m.limits.per_payment,
                            m.limits.daily
                        );
                    }
                }
            }
            Ok(())
        }
    }
}
