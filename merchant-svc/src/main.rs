//! The merchant-svc binary.
use std::path::PathBuf;

use clap::{Parser, Subcommand};
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
