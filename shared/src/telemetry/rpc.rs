//! A span (and, on the server, a latency observation) per RPC, as tower
//! layers: [`ServerTraceLayer`] on both gRPC servers, [`ClientTraceLayer`]
//! on merchant-svc's client of payment-svc. The server continues the
//! caller's trace (`traceparent`), the client passes its own on, so one
//! checkout is one trace across both services.
//!
//! Health checks and reflection make no span and no observation. Methods
//! the contract does not define are named `unknown`, so neither span names
//! nor metric labels can be made up by a caller.
use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use opentelemetry::trace::TraceContextExt as _;
use tower::{Layer, Service};
use tracing::{field::Empty, Instrument as _, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::metrics::RpcMetrics;

/// Tooling, not traffic: health checks (every few seconds) and reflection
/// (grpcurl asks before each call) make no span and no observation.
const UNTRACED: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The gRPC status of a response: `grpc-status` in its headers (an error,
/// sent trailers-only), else OK (a unary answer's status is in trailers,
/// and tonic sends errors trailers-only).
fn status_of(headers: &http::HeaderMap) -> tonic::Code {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from)
        .unwrap_or(tonic::Code::Ok)
}

/// Records a call's status code on its span, and marks the span failed for
/// the codes that mean the server failed (OpenTelemetry's gRPC
/// conventions); the rest are the caller's to fix.
fn record_status(span: &Span, code: tonic::Code) {
    use tonic::Code::*;
    span.record("rpc.grpc.status_code", code as i32);
    if matches!(
        code,
        Unknown | DeadlineExceeded | Unimplemented | Internal | Unavailable | DataLoss
    ) {
        span.record("otel.status_code", "ERROR");
    }
}

/// Writes the span's trace and span ids as fields, so that JSON log lines
/// in it carry them (only when traces are on).
pub(super) fn record_ids(span: &Span) {
    let context = span.context();
    let otel = context.span();
    let ids = otel.span_context();
    if ids.is_valid() {
        span.record("trace_id", ids.trace_id().to_string());
        span.record("span_id", ids.span_id().to_string());
    }
}

/// Every RPC path the paybind contract defines.
fn known_methods() -> HashSet<String> {
    use prost::Message as _;
    let mut known = HashSet::new();
    if let Ok(set) = prost_types::FileDescriptorSet::decode(paybind_proto::FILE_DESCRIPTOR_SET) {
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    known.insert(format!(
                        "{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    known
}

/// Server side: continues the caller's trace, records the status code and
/// (if given) the latency per method and code.
#[derive(Clone)]
pub struct ServerTraceLayer {
    known: Arc<HashSet<String>>,
    metrics: Option<RpcMetrics>,
}

impl ServerTraceLayer {
    pub fn new(metrics: Option<RpcMetrics>) -> Self {
        Self {
            known: Arc::new(known_methods()),
            metrics,
        }
    }
}

impl<S> Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTrace {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ServerTrace<S> {
    inner: S,
    layer: ServerTraceLayer,
}

impl<S, B, R> Service<http::Request<B>> for ServerTrace<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        if UNTRACED.iter().any(|prefix| path.starts_with(prefix)) {
            return Box::pin(self.inner.call(request));
        }
        let method = path
            .strip_prefix('/')
            .filter(|m| self.layer.known.contains(*m))
            .unwrap_or("unknown")
            .to_owned();
        let span = tracing::info_span!(
            "rpc",
            otel.name = %method,
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
            paybind.caller = Empty,
            trace_id = Empty,
            span_id = Empty,
        );
        let _ = span.set_parent(super::extract_context(request.headers()));
        record_ids(&span);
        let started = Instant::now();
        let response = span.in_scope(|| self.inner.call(request));
        let metrics = self.layer.metrics.clone();
        Box::pin(async move {
            let response = response.instrument(span.clone()).await;
            // A transport failure is answered by tonic as INTERNAL.
            let code = response
                .as_ref()
                .map_or(tonic::Code::Internal, |r| status_of(r.headers()));
            record_status(&span, code);
            if let Some(metrics) = metrics {
                metrics.observe(&method, code, started.elapsed());
            }
            response
        })
    }
}

/// Client side: a span per call, its context sent as `traceparent`.
#[derive(Clone, Copy, Default)]
pub struct ClientTraceLayer;

impl<S> Layer<S> for ClientTraceLayer {
    type Service = ClientTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientTrace { inner }
    }
}

#[derive(Clone)]
pub struct ClientTrace<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for ClientTrace<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // Our own client's paths: a fixed set.
        let method = request.uri().path().trim_start_matches('/').to_owned();
        let span = tracing::info_span!(
            "rpc",
            otel.name = %method,
            otel.kind = "client",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
        );
        super::inject_context(&span.context(), request.headers_mut());
        let response = span.in_scope(|| self.inner.call(request));
        Box::pin(async move {
            let response = response.instrument(span.clone()).await;
            // No answer at all: the channel could not reach payment-svc.
            let code = response
                .as_ref()
                .map_or(tonic::Code::Unavailable, |r| status_of(r.headers()));
            record_status(&span, code);
            response
        })
    }
}

/// The caller's name (a merchant id, an operator), once known, on the
/// current RPC span.
pub fn record_caller(name: &str) {
    Span::current().record("paybind.caller", name);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use tower::ServiceExt as _;

    async fn call(metrics: &Metrics, path: &str, status: Option<&str>) {
        let status = status.map(str::to_owned);
        let inner = tower::service_fn(move |_request: http::Request<()>| {
            let status = status.clone();
            async move {
                let mut response = http::Response::new(());
                if let Some(code) = status {
                    response
                        .headers_mut()
                        .insert("grpc-status", code.parse().expect("header"));
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let service = ServerTraceLayer::new(Some(metrics.rpc.clone())).layer(inner);
        let request = http::Request::builder()
            .uri(path)
            .body(())
            .expect("request");
        service.oneshot(request).await.expect("answered");
    }

    #[tokio::test]
    async fn methods_are_named_by_the_contract_and_codes_by_the_answer() {
        let metrics = Metrics::new();
        call(&metrics, "/paybind.payment.v1.BindingService/Pay", None).await;
        call(
            &metrics,
            "/paybind.payment.v1.BindingService/Pay",
            Some("3"),
        )
        .await;
        // A made-up method cannot make a label of its own.
        call(
            &metrics,
            "/paybind.payment.v1.BindingService/Nope",
            Some("12"),
        )
        .await;
        call(&metrics, "/x.Y/Z", Some("12")).await;
        // Health checks are not observed.
        call(&metrics, "/grpc.health.v1.Health/Check", None).await;
        let text = metrics.render();
        let count = |labels: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "paybind_rpc_server_duration_seconds_count{{{labels}}}"
                    ))
                })
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert_eq!(
            count(r#"method="paybind.payment.v1.BindingService/Pay",code="OK""#).as_deref(),
            Some("1")
        );
        assert_eq!(
            count(r#"method="paybind.payment.v1.BindingService/Pay",code="INVALID_ARGUMENT""#)
                .as_deref(),
            Some("1")
        );
        assert_eq!(
            count(r#"method="unknown",code="UNIMPLEMENTED""#).as_deref(),
            Some("2")
        );
        assert!(!text.contains("Nope") && !text.contains("Health"), "{text}");
    }
}
