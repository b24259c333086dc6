//! Prometheus metrics: one registry per running service (so two services
//! in one process, or a test's many stacks, never mix their counts),
//! served at `GET /metrics` on the service's own metrics listener
//! (`[metrics] listen`), away from the public pages.
//!
//! The families both services share live here — RPCs by method and code,
//! group-commit batch sizes, database pool use; a service registers its
//! own with [`Metrics::register`] (payment-svc: payments and bind sessions). Label
//! values are bounded sets (method names known to the contract, status
//! codes, outcomes): never an id, an amount or anything a caller typed.
use std::{sync::Arc, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::{Metric, Registry},
};

/// Section `[metrics]` of both services' configuration.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct MetricsSettings {
    /// Where `GET /metrics` is served, for Prometheus: an address of the
    /// operator's network, not the public one (port 0 takes any free port).
    pub listen: std::net::SocketAddr,
}

impl MetricsSettings {
    /// On the loopback interface, at `port`.
    pub fn local(port: u16) -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

/// The label of a histogram of latencies or sizes, built on first use.
type HistogramOf<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// `package.Service/Method`, or `unknown` for a path the contract does
    /// not define.
    pub method: String,
    /// The gRPC status code's name, e.g. `OK`, `INVALID_ARGUMENT`.
    pub code: String,
}

/// RPCs served: a latency histogram per method and status code (its
/// `_count` is the rate).
#[derive(Clone)]
pub struct RpcMetrics(HistogramOf<RpcLabels>);

impl RpcMetrics {
    pub fn observe(&self, method: &str, code: tonic::Code, took: Duration) {
        self.0
            .get_or_create(&RpcLabels {
                method: method.to_owned(),
                code: code_name(code).to_owned(),
            })
            .observe(took.as_secs_f64());
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriterLabels {
    /// Which group-commit writer, e.g. `payment_reservations`.
    pub writer: &'static str,
}

/// Group commit: how many writes each batch carried.
#[derive(Clone)]
pub struct BatchMetrics(HistogramOf<WriterLabels>);

impl BatchMetrics {
    pub fn observe(&self, writer: &'static str, size: usize) {
        self.0
            .get_or_create(&WriterLabels { writer })
            .observe(size as f64);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

/// What a database pool holds now.
#[derive(Debug, Clone, Copy)]
pub struct PoolUse {
    /// Connections open.
    pub open: u32,
    /// Of those, idle.
    pub idle: u32,
    /// The most the pool will open.
    pub max: u32,
}

type PoolReader = Box<dyn Fn() -> PoolUse + Send + Sync>;

/// One service's registry and the families every service has.
pub struct Metrics {
    registry: Registry,
    pub rpc: RpcMetrics,
    pub batches: BatchMetrics,
    pool: Family<PoolLabels, Gauge>,
    pool_reader: Option<PoolReader>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("paybind");
        let rpc: HistogramOf<RpcLabels> = Family::new_with_constructor(|| {
            // 0.5 ms to ~16 s.
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "rpc_server_duration_seconds",
            "RPCs served, by method and gRPC status code: how long each took",
            rpc.clone(),
        );
        let batches: HistogramOf<WriterLabels> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(1.0, 2.0, 8)));
        registry.register(
            "group_commit_batch_size",
            "Writes carried by each group-commit batch, by writer",
            batches.clone(),
        );
        let pool = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database pool connections by state (in_use, idle, max)",
            pool.clone(),
        );
        Self {
            registry,
            rpc: RpcMetrics(rpc),
            batches: BatchMetrics(batches),
            pool,
            pool_reader: None,
        }
    }

    /// Adds a service's own metric (the `paybind_` prefix is added).
    pub fn register(&mut self, name: &str, help: &str, metric: impl Metric) {
        self.registry.register(name, help, metric);
    }

    /// Reads the database pool at each scrape.
    pub fn watch_pool(&mut self, read: impl Fn() -> PoolUse + Send + Sync + 'static) {
        self.pool_reader = Some(Box::new(read));
    }

    /// The exposition, in the OpenMetrics text format.
    pub fn render(&self) -> String {
        if let Some(read) = &self.pool_reader {
            let pool = read();
            let set = |state, value: u32| {
                self.pool
                    .get_or_create(&PoolLabels { state })
                    .set(i64::from(value));
            };
            set("in_use", pool.open.saturating_sub(pool.idle));
            set("idle", pool.idle);
            set("max", pool.max);
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// `GET /metrics` (and nothing else) for Prometheus.
pub fn router(metrics: Arc<Metrics>) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    )
}

/// A gRPC code's name as the gRPC specification spells it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rpc_and_the_pool_show_in_the_exposition() {
        let mut metrics = Metrics::new();
        metrics.watch_pool(|| PoolUse {
            open: 5,
            idle: 2,
            max: 8,
        });
        metrics.rpc.observe(
            "paybind.payment.v1.BindingService/Pay",
            tonic::Code::Ok,
            Duration::from_millis(3),
        );
        let text = metrics.render();
        assert!(
            text.contains(
                r#"paybind_rpc_server_duration_seconds_count{method="paybind.payment.v1.BindingService/Pay",code="OK"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"paybind_db_pool_connections{state="in_use"} 3"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
