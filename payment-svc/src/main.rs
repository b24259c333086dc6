//! The payment-svc binary: serve, the development stack, and merchant admin.
use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, Subcommand};

/// jemalloc, with its background threads on: memory freed after a burst (a
/// connection flood, a load peak) goes back to the operating system within
/// seconds, so the process returns to its baseline instead of keeping its
/// peak.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use paybind_proto::payment::v1::binding_service_server;
use paybind_shared::tls::PeerCertificate;
use payment_svc::{
    admin::{self, MerchantCommand},
    config::Settings,
    dev,
    domain::merchants,
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
    /// Exit 0 if the payment-svc this configuration describes answers its
    /// gRPC health check with SERVING (for container health checks and
    /// Kubernetes probes; it presents the service's own certificate).
    Health {
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// Development: create certificates, keys and the demo merchant under
    /// DIR (kept across restarts), then serve on SQLite.
    Dev {
        #[arg(long, default_value = "dev-data")]
        dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
    },
    /// Register merchants and their certificates; list, disable, enable;
    /// rotate and revoke certificates.
    #[command(subcommand)]
    Merchant(MerchantCommand),
    /// Development: issue a client certificate for another merchant (SAN
    /// URI urn:paybind:merchant:NAME), signed by the development CA in DIR.
    /// It is let in only once registered with `merchant add --cert`; a
    /// production payment-svc refuses the development CA altogether.
    DevCert {
        #[arg(long, default_value = "dev-data/certs")]
        dir: PathBuf,
        /// The merchant's certificate name.
        name: String,
        /// Write FILE.pem / FILE-key.pem instead of NAME.pem (a second
        /// certificate for the same merchant, for a rotation).
        #[arg(long)]
        file: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Health { timeout_ms } = cli.command {
        // No logging set up: the probe's answer is its exit code (and one
        // line on failure).
        let settings = Settings::load(cli.config.as_deref())?;
        return paybind_shared::grpc::health::probe(
            settings.grpc.listen,
            &settings.tls,
            binding_service_server::SERVICE_NAME,
            std::time::Duration::from_millis(timeout_ms),
        )
        .await;
    }
    let telemetry = paybind_shared::telemetry::init("payment-svc", "info,sqlx=warn");
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(error = %e, "could not start the allocator's background threads");
    }
    let result = run(cli).await;
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), "payment-svc stopped with an error");
    }
    telemetry.shutdown();
    result
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Health { .. } => Ok(()),
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
            let demo_cert = PeerCertificate::from_pem_file(&setup.merchant_cert)?;
            if merchants::ensure(store.as_ref(), &dev::demo_merchant()?, &demo_cert).await? {
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
        Command::DevCert { dir, name, file } => {
            paybind_shared::fields::identifier(&name, "merchant name")?;
            let stem = file.unwrap_or_else(|| name.clone());
            paybind_shared::fields::identifier(&stem, "--file")?;
            let files = paybind_shared::tls::dev::ensure_merchant_as(&dir, &name, &stem)?;
            let peer = PeerCertificate::from_pem_file(&files.cert)?;
            println!(
                "certificate: {}\nkey:         {}\nSHA-256:     {}\nregister it: payment-svc merchant add --id {name} --cert {} ...",
                files.cert.display(),
                files.key.display(),
                peer.fingerprint,
                files.cert.display(),
            );
            Ok(())
        }
        Command::Merchant(cmd) => {
            let settings = Settings::load(cli.config.as_deref())?;
            let store = store::connect(settings.database.url.expose_secret(), 2).await?;
            admin::run(cmd, store.as_ref(), settings.environment).await
        }
    }
}
