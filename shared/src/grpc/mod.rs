//! gRPC plumbing shared by both servers: error statuses with a machine-readable
//! reason (also for the errors tonic makes itself), the caller layer, and
//! the health and reflection services.
use std::{collections::HashMap, time::Duration};

use tonic::{body::Body, transport::server::Router, Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{layer::util::Identity, layer::util::Stack, util::MapResponseLayer};

use crate::{fields::Rejected, metrics::RpcMetrics, telemetry::rpc::ServerTraceLayer};

mod caller;
pub mod conn;
pub mod health;
mod transport_errors;

pub use caller::{caller, Authenticate, CallerLayer, CallerService};
use conn::{ActivityLayer, ConnectionLimits};

/// The largest request message either service decodes (documented in the
/// contract); a larger one is RESOURCE_EXHAUSTED / MESSAGE_TOO_LARGE.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A paybind server: tonic's router behind the span and metrics of each
/// RPC, the map that gives every error a reason, and the layer that marks
/// connections used.
pub type PaybindRouter = Router<
    Stack<
        ActivityLayer,
        Stack<
            MapResponseLayer<fn(http::Response<Body>) -> http::Response<Body>>,
            Stack<ServerTraceLayer, Identity>,
        >,
    >,
>;

/// How a server treats its connections (section `[server]` of both
/// services' configuration). Every default is safe to run with.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct ServerSettings {
    /// Open connections at most; at the cap the longest-unused one makes
    /// room, and only when all are busy is a new one refused. Lowered to
    /// fit under the open-files limit.
    pub max_connections: usize,
    /// A connection must send its first request this soon after it is
    /// accepted (TCP, TLS handshake and HTTP/2 preface included).
    pub handshake_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout_ms: u64,
    /// A gRPC connection this old is asked to go away (HTTP/2 GOAWAY): its
    /// requests in flight finish, the client connects again — through a
    /// load balancer, perhaps to another replica. Without it one client's
    /// calls stay on one replica for as long as the connection lives.
    pub max_connection_age_ms: u64,
    /// HTTP/2 keepalive pings: how often, and how long an answer may take
    /// before the peer counts as gone.
    pub keepalive_interval_ms: u64,
    pub keepalive_timeout_ms: u64,
    /// Concurrent requests (streams) per connection, advertised to clients.
    pub max_concurrent_streams: u32,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            handshake_timeout_ms: 10_000,
            idle_timeout_ms: 300_000,
            max_connection_age_ms: 300_000,
            keepalive_interval_ms: 30_000,
            keepalive_timeout_ms: 10_000,
            max_concurrent_streams: 256,
        }
    }
}

impl ServerSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        let within = |v: u64, lo: u64, hi: u64, key: &str| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "server.{key} must be between {lo} and {hi}"
                ))
            }
        };
        within(
            self.handshake_timeout_ms,
            100,
            600_000,
            "handshake_timeout_ms",
        )?;
        within(self.idle_timeout_ms, 1_000, 86_400_000, "idle_timeout_ms")?;
        within(
            self.max_connection_age_ms,
            10_000,
            86_400_000,
            "max_connection_age_ms",
        )?;
        within(
            self.keepalive_interval_ms,
            1_000,
            3_600_000,
            "keepalive_interval_ms",
        )?;
        within(
            self.keepalive_timeout_ms,
            100,
            600_000,
            "keepalive_timeout_ms",
        )?;
        if !(16..=1_000_000).contains(&self.max_connections) {
            anyhow::bail!("server.max_connections must be between 16 and 1000000");
        }
        if !(1..=10_000).contains(&self.max_concurrent_streams) {
            anyhow::bail!("server.max_concurrent_streams must be between 1 and 10000");
        }
        Ok(())
    }
}

/// The `google.rpc.ErrorInfo.domain` of every paybind error.
pub const ERROR_DOMAIN: &str = "paybind.dev";

/// Builds a `Status` whose details carry `ErrorInfo { reason, domain }` and,
/// where given, the offending field (`BadRequest`) and a retry delay.
#[derive(Debug)]
pub struct ErrorStatus {
    code: Code,
    reason: std::borrow::Cow<'static, str>,
    message: String,
    metadata: HashMap<String, String>,
    violations: Vec<(String, String)>,
    retry_after: Option<Duration>,
}

impl ErrorStatus {
    pub fn new(code: Code, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            message: message.into(),
            metadata: HashMap::new(),
            violations: Vec::new(),
            retry_after: None,
        }
    }

    /// Adds an `ErrorInfo.metadata` entry. Never put a secret here.
    pub fn meta(mut self, key: &str, value: impl ToString) -> Self {
        self.metadata.insert(key.to_owned(), value.to_string());
        self
    }

    /// Names the request field at fault (also added as metadata `field`).
    pub fn field(mut self, path: &str) -> Self {
        self.metadata.insert("field".to_owned(), path.to_owned());
        self.violations
            .push((path.to_owned(), self.message.clone()));
        self
    }

    /// Another paybind service's error, passed on as it was received.
    pub fn passed_on(
        code: Code,
        reason: String,
        message: String,
        metadata: HashMap<String, String>,
        violations: Vec<(String, String)>,
        retry_after: Option<Duration>,
    ) -> Self {
        Self {
            code,
            reason: reason.into(),
            message,
            metadata,
            violations,
            retry_after,
        }
    }

    /// A request refused for its fields: `INVALID_ARGUMENT`, the first
    /// field's reason (and its path as metadata `field`), and a `BadRequest`
    /// that lists every rejected field.
    pub fn rejected(rejected: &Rejected) -> Self {
        let first = rejected.first();
        let mut status = Self::new(Code::InvalidArgument, first.reason, rejected.to_string());
        status
            .metadata
            .insert("field".to_owned(), first.field.to_owned());
        status.violations = rejected
            .violations()
            .iter()
            .map(|v| (v.field.to_owned(), v.message.clone()))
            .collect();
        status
    }

    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    pub fn build(self) -> Status {
        let mut details = ErrorDetails::new();
        details.set_error_info(self.reason, ERROR_DOMAIN, self.metadata);
        for (field, description) in self.violations {
            details.add_bad_request_violation(field, description);
        }
        if let Some(delay) = self.retry_after {
            details.set_retry_info(Some(delay));
        }
        Status::with_error_details(self.code, self.message, details)
    }
}

impl From<ErrorStatus> for Status {
    fn from(value: ErrorStatus) -> Self {
        value.build()
    }
}

/// The `ErrorInfo.reason` of a status, if it has one (for clients and tests).
pub fn reason_of(status: &Status) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
}

/// The `ErrorInfo.metadata` of a status (empty if it has none).
pub fn metadata_of(status: &Status) -> HashMap<String, String> {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.metadata.clone())
        .unwrap_or_default()
}

/// The base every paybind server starts from: mutual TLS, a deadline and a
/// concurrency limit per connection, a span and a latency observation per
/// RPC (into `rpc`), `grpc.health.v1` reporting `serving` (the service's
/// full name) as SERVING, and reflection. The caller adds its own service
/// and serves.
pub async fn server_router(
    tls: tonic::transport::ServerTlsConfig,
    serving: &str,
    settings: &ServerSettings,
    rpc: RpcMetrics,
) -> anyhow::Result<PaybindRouter> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(serving, tonic_health::ServingStatus::Serving)
        .await;
    let (reflection_v1, reflection_v1alpha) = reflection_services()?;
    let tls = tls.timeout(Duration::from_millis(settings.handshake_timeout_ms));
    Ok(tonic::transport::Server::builder()
        .tls_config(tls)?
        .timeout(Duration::from_secs(30))
        .max_concurrent_streams(settings.max_concurrent_streams)
        .concurrency_limit_per_connection(settings.max_concurrent_streams as usize)
        .http2_keepalive_interval(Some(Duration::from_millis(settings.keepalive_interval_ms)))
        .http2_keepalive_timeout(Some(Duration::from_millis(settings.keepalive_timeout_ms)))
        .max_connection_age(Duration::from_millis(settings.max_connection_age_ms))
        // Requests in flight on an aged connection get the server's own
        // deadline to finish.
        .max_connection_age_grace(Duration::from_secs(30))
        // Outermost: it sees the status the client will see.
        .layer(ServerTraceLayer::new(Some(rpc)))
        .layer(MapResponseLayer::new(
            transport_errors::with_reason as fn(http::Response<Body>) -> http::Response<Body>,
        ))
        .layer(ActivityLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha))
}

/// The server side of a bound listener: every accepted connection watched
/// and capped (see [`conn`]), with TCP_NODELAY. Raises the open-files limit
/// first, so the cap — not the operating system — decides.
pub fn incoming(
    listener: tokio::net::TcpListener,
    settings: &ServerSettings,
) -> impl futures::Stream<Item = std::io::Result<conn::GuardedStream>> {
    let open_files = conn::raise_open_files_limit();
    let max_connections = conn::effective_max_connections(settings.max_connections, open_files);
    tracing::info!(open_files, max_connections, "connection limits");
    conn::guarded_incoming(
        listener,
        ConnectionLimits {
            max_connections,
            handshake_timeout: Duration::from_millis(settings.handshake_timeout_ms),
            idle_timeout: Duration::from_millis(settings.idle_timeout_ms),
        },
    )
}

/// gRPC reflection (v1 and v1alpha, so that both new and older grpcurl
/// releases can list and describe the services) over the paybind descriptors.
pub fn reflection_services() -> anyhow::Result<(
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
)> {
    let v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(paybind_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(paybind_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    Ok((v1, v1alpha))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_age_out_of_range_is_refused_by_name() {
        assert!(ServerSettings::default().validate().is_ok());
        for age in [0, 9_999, 86_400_001] {
            let settings = ServerSettings {
                max_connection_age_ms: age,
                ..Default::default()
            };
            let err = settings.validate().expect_err("out of range");
            assert!(
                err.to_string().contains("server.max_connection_age_ms"),
                "{err}"
            );
        }
    }

    #[test]
    fn status_carries_reason_metadata_and_field() {
        let status = ErrorStatus::new(Code::InvalidArgument, "INVALID_CVV", "cvv must be 3 digits")
            .field("card.cvv")
            .build();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(reason_of(&status).as_deref(), Some("INVALID_CVV"));
        assert_eq!(
            metadata_of(&status).get("field").map(String::as_str),
            Some("card.cvv")
        );
        let details = status.get_error_details();
        let bad = details.bad_request().expect("bad request detail");
        assert_eq!(bad.field_violations[0].field, "card.cvv");
    }

    #[test]
    fn a_rejected_request_lists_every_field() {
        use crate::fields::{AllOk, Invalid};
        let rejected = (
            Err::<(), _>(Invalid::new("INVALID_CARD_NUMBER", "bad number").at("card.number")),
            Err::<(), _>(Invalid::new("INVALID_CVV", "bad cvv").at("card.cvv")),
        )
            .all_ok()
            .expect_err("rejected");
        let status = ErrorStatus::rejected(&rejected).build();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(reason_of(&status).as_deref(), Some("INVALID_CARD_NUMBER"));
        assert_eq!(
            metadata_of(&status).get("field").map(String::as_str),
            Some("card.number")
        );
        let fields: Vec<String> = status
            .get_error_details()
            .bad_request()
            .expect("bad request")
            .field_violations
            .iter()
            .map(|v| v.field.clone())
            .collect();
        assert_eq!(fields, ["card.number", "card.cvv"]);
    }
}
