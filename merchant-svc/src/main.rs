//! The merchant-svc binary.
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// jemalloc, with its background threads on: memory freed after a burst (a
/// connection flood, a load peak) goes back to the operating system within
/// seconds, so the process returns to its baseline instead of keeping its
/// peak.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use merchant_svc::{config::Settings, startup::App};
use paybind_proto::merchant::v1::merchant_service_server;

#[derive(Parser)]
#[command(
    name = "merchant-svc",
    about = "paybind's merchant (e-commerce) service"
)]
struct Cli {
    /// Configuration file (TOML); MERCHANT__* environment variables override it.
    #[arg(long, global = true, env = "MERCHANT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the shop's gRPC API and the storefront.
    Serve,
    /// Exit 0 if the merchant-svc this configuration describes answers its
    /// gRPC health check with SERVING (for container health checks and
    /// Kubernetes probes; it presents the service's own certificate).
    Health {
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Health { timeout_ms } => {
            paybind_shared::grpc::health::probe(
                settings.grpc.listen,
                &settings.tls,
                merchant_service_server::SERVICE_NAME,
                std::time::Duration::from_millis(timeout_ms),
            )
            .await
        }
        Command::Serve => {
            let telemetry = paybind_shared::telemetry::init("merchant-svc", "info,sqlx=warn");
            if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
                tracing::warn!(error = %e, "could not start the allocator's background threads");
            }
            let served = match App::build(settings).await {
                Ok(app) => {
                    app.run_until_stopped(paybind_shared::shutdown_signal())
                        .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = &served {
                tracing::error!(error = %format!("{e:#}"), "merchant-svc stopped with an error");
            }
            telemetry.shutdown();
            served
        }
    }
}
