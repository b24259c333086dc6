//! What both paybind services need and nothing service-specific: layered
//! configuration, telemetry, TLS (and the development PKI), money, ids, and the
//! gRPC plumbing for errors, health and reflection.
pub mod batch;
pub mod config;
pub mod db;
pub mod grpc;
pub mod ids;
pub mod money;
pub mod telemetry;
pub mod tls;

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
