//! What both paybind services need and nothing service-specific: layered
//! configuration, telemetry, TLS (and the development PKI), the contract's
//! shared vocabulary (money, ids, people, the enums of `model`) with its
//! parsers and wire mappings, the clock, database plumbing, the vault
//! (encryption at rest and keyed hashes), and the gRPC plumbing for errors,
//! health and reflection.
pub mod batch;
pub mod clock;
pub mod config;
pub mod db;
pub mod fields;
pub mod grpc;
pub mod ids;
pub mod metrics;
pub mod model;
pub mod money;
pub mod person;
pub mod telemetry;
pub mod tls;
pub mod vault;
pub mod web;
pub mod wire;

/// Resolves on Ctrl-C or SIGTERM: the services' graceful shutdown trigger.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
