//! `otlp-receiver`: the project's OTLP test receiver as a program — the
//! tracing backend's stand-in in the compose check (deploy/compose-check),
//! where no tracing backend's image can be pulled. Takes OTLP/gRPC trace
//! exports on `--listen` and shows what it received as JSON on `--http`:
//! `GET /api/spans` (every span: trace and span ids, parent, name,
//! service.name, kind, attributes).
use std::net::SocketAddr;

use clap::Parser;

#[derive(Parser)]
#[command(name = "otlp-receiver")]
struct Cli {
    /// OTLP/gRPC (traces).
    #[arg(long, default_value = "0.0.0.0:4317")]
    listen: SocketAddr,
    /// The JSON view of what was received.
    #[arg(long, default_value = "0.0.0.0:16686")]
    http: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let receiver = paybind_tests::otlp::Receiver::start(cli.listen).await?;
    let collected = receiver.collected.clone();
    let app = axum::Router::new()
        .route(
            "/api/spans",
            axum::routing::get(move || {
                let collected = collected.clone();
                async move {
                    (
                        [(http::header::CONTENT_TYPE, "application/json")],
                        serde_json::to_string(&collected.spans()).unwrap_or_default(),
                    )
                }
            }),
        )
        .route(
            "/",
            axum::routing::get(|| async { "otlp-receiver: GET /api/spans\n" }),
        );
    let http = tokio::net::TcpListener::bind(cli.http).await?;
    println!(
        "otlp-receiver: OTLP/gRPC on {}, spans as JSON on http://{}/api/spans",
        receiver.addr,
        http.local_addr()?
    );
    tokio::select! {
        served = axum::serve(http, app) => served?,
        () = paybind_shared::shutdown_signal() => {}
    }
    Ok(())
}
