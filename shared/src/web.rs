//! Serving HTTP pages (payment-svc's binding page, merchant-svc's
//! storefront) with the same connection hygiene as the gRPC servers
//! ([`crate::grpc::conn`]): a connection that sends no complete request
//! within `server.handshake_timeout_ms` is closed (a slow-loris sending
//! headers a byte at a time included), one idle for
//! `server.idle_timeout_ms` too, the number of open connections is capped
//! with the idlest making room, and a request's headers must arrive within
//! the same handshake timeout on a kept-alive connection as well.
use std::{convert::Infallible, future::Future, time::Duration};

use futures::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tonic::transport::server::Connected;
use tower::ServiceExt;

use crate::grpc::ServerSettings;

/// Binds an HTTP listener; a failure names the setting (`key`) and address.
pub async fn bind(addr: std::net::SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("{key} {addr}: {e}"))
}

/// How long requests in flight may take to finish once stopping.
const DRAIN_FOR: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `shutdown` resolves, then lets the
/// requests in flight finish (for up to five seconds).
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    settings: &ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let header_timeout = Duration::from_millis(settings.handshake_timeout_ms);
    let incoming = crate::grpc::incoming(listener, settings);
    tokio::pin!(incoming);
    tokio::pin!(shutdown);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            next = incoming.next() => match next {
                Some(Ok(stream)) => stream,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "could not accept a connection");
                    continue;
                }
                None => break,
            },
            () = &mut shutdown => break,
        };
        let activity = stream.connect_info().activity;
        let router = router.clone();
        // Each request marks its connection in use while it runs.
        let service =
            hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let guard = activity.begin();
                let router = router.clone();
                async move {
                    let response = router.oneshot(request.map(axum::body::Body::new)).await;
                    drop(guard);
                    Ok::<_, Infallible>(match response {
                        Ok(response) => response,
                        Err(never) => match never {},
                    })
                }
            });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "page connection ended");
            }
        });
    }
    if tokio::time::timeout(DRAIN_FOR, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("page requests still running after {DRAIN_FOR:?}; stopping anyway");
    }
}
