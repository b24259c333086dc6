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
    /// Serve the shop's gRPC API.
    Serve,
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
    }
}
