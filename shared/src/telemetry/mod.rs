//! Logs, traces and the trace context that ties one purchase together
//! across both services.
//!
//! - Logs: human-readable lines, or JSON lines (`LOG_FORMAT=json`) that
//!   carry the request span's `trace_id` and `span_id`; `RUST_LOG` filters.
//! - Traces: exported over OTLP/gRPC when the standard variables configure
//!   it (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`,
//!   `OTEL_TRACES_SAMPLER`…), batched and flushed on shutdown. Without them
//!   no exporter, thread or buffer exists.
//! - Context: the W3C `traceparent` header is read by every server
//!   ([`rpc::ServerTraceLayer`], [`pages::traced`]) and written by
//!   merchant-svc's client of payment-svc ([`rpc::ClientTraceLayer`]).
//!
//! Spans carry names, methods, routes, status codes and ids that are not
//! secrets (merchant, payment, order ids): never a request body, a card or
//! ID number, a CVV, a code, a token or a phone number.
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

/// What is traced, whatever `RUST_LOG` lets into the logs: paybind's spans
/// (and the events in them) at info, none of the libraries' own.
const TRACE_FILTER: &str = "info,h2=off,hyper=off,hyper_util=off,tower=off,tonic=off,rustls=off,sqlx=off,opentelemetry=off,opentelemetry_sdk=off";

mod context;
mod export;
pub mod pages;
pub mod rpc;

pub use context::{extract_context, inject_context};

/// Keeps the trace exporter running; [`Telemetry::shutdown`] (or dropping
/// it) flushes what is buffered.
#[must_use = "dropping the telemetry guard stops exporting traces"]
pub struct Telemetry {
    otlp: Option<export::Otlp>,
}

impl Telemetry {
    /// Sends the spans still buffered and stops the exporter.
    pub fn shutdown(mut self) {
        if let Some(otlp) = self.otlp.take() {
            otlp.shutdown();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(otlp) = self.otlp.take() {
            otlp.shutdown();
        }
    }
}

/// Installs the global subscriber for `service` (its `service.name` unless
/// `OTEL_SERVICE_NAME` says otherwise): `RUST_LOG` filters (else
/// `default_filter`), `LOG_FORMAT=json` switches to JSON lines, and the
/// OTLP exporter when configured. Calling it twice installs nothing more.
pub fn init(service: &str, default_filter: &str) -> Telemetry {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("LOG_FORMAT").as_deref() == Ok("json");
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed()
    } else {
        // Colours for a terminal only: not into a container's log or a file.
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_filter(filter)
            .boxed()
    };
    let (otlp, problem) = match export::configured() {
        false => (None, None),
        true => match export::Otlp::start(service) {
            Ok(otlp) => (Some(otlp), None),
            Err(e) => (None, Some(e)),
        },
    };
    let traces = otlp.as_ref().map(|otlp| {
        tracing_opentelemetry::layer()
            .with_tracer(otlp.tracer())
            // Source paths, modules, thread names and poll timings say
            // nothing about a request.
            .with_location(false)
            .with_target(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(EnvFilter::new(TRACE_FILTER))
    });
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .is_ok();
    if let Some(e) = problem {
        tracing::error!(error = %format!("{e:#}"), "could not start the OTLP trace exporter; not exporting traces");
    }
    if !installed {
        // Another subscriber is global already (a second service in this
        // process): its exporter serves both.
        if let Some(otlp) = otlp {
            otlp.shutdown();
        }
        return Telemetry { otlp: None };
    }
    if let Some(otlp) = &otlp {
        tracing::info!(endpoint = %otlp.endpoint(), "exporting traces over OTLP");
    }
    Telemetry { otlp }
}

/// For tests: silent unless `TEST_LOG` is set.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        std::mem::forget(init("paybind-test", "info"));
    }
}
