//! A span per page request (payment-svc's binding pages, merchant-svc's
//! storefront), continuing a `traceparent` if the request has one. Named
//! by the route's pattern (`GET /bind/{session_id}`), never by the path
//! itself: paths carry session ids, queries carry whatever was typed.
use axum::{extract::MatchedPath, middleware::Next, response::Response};
use tracing::{field::Empty, Instrument as _};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Adds [`trace_request`] to every route of `router`.
pub fn traced(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::from_fn(trace_request))
}

/// The middleware: static files and the favicon make no span.
async fn trace_request(request: axum::extract::Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    if route.starts_with("/static/") || route == "/favicon.ico" {
        return next.run(request).await;
    }
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!(
        "page",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = Empty,
        trace_id = Empty,
        span_id = Empty,
    );
    let _ = span.set_parent(super::extract_context(request.headers()));
    super::rpc::record_ids(&span);
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}
