//! The OTLP trace exporter, configured by the standard `OTEL_*` variables.
//!
//! OpenTelemetry's batch processor exports from a thread of its own, and
//! the gRPC (tonic) exporter needs a Tokio reactor: each export is run on a
//! one-thread runtime kept for the exporter alone, so exporting never
//! competes with, or waits on, the service's own runtime (nor panics for
//! want of one).
use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{
    error::{OTelSdkError, OTelSdkResult},
    trace::{SdkTracerProvider, SpanData, SpanExporter, Tracer},
    Resource,
};

/// Whether the environment asks for OTLP trace export: an endpoint is set,
/// and neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`.
pub fn configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

pub struct Otlp {
    provider: SdkTracerProvider,
    runtime: tokio::runtime::Runtime,
    endpoint: String,
}

impl Otlp {
    pub fn start(service: &str) -> anyhow::Result<Self> {
        if let Ok(protocol) = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL") {
            if protocol != "grpc" {
                anyhow::bail!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL={protocol:?}: only \"grpc\" is built in (port 4317)"
                );
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .context("starting the exporter's runtime")?;
        // The channel is made (lazily connected) on the exporter's runtime.
        let exporter = {
            let _on_runtime = runtime.enter();
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_timeout(Duration::from_secs(10))
                .build()
                .context("building the OTLP exporter (OTEL_EXPORTER_OTLP_ENDPOINT)")?
        };
        let mut resource = Resource::builder();
        if std::env::var("OTEL_SERVICE_NAME").is_err() {
            resource = resource.with_service_name(service.to_owned());
        }
        let provider = SdkTracerProvider::builder()
            .with_resource(resource.build())
            .with_batch_exporter(OnRuntime {
                inner: Arc::new(exporter),
                runtime: runtime.handle().clone(),
            })
            .build();
        let endpoint = std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT"))
            .unwrap_or_default();
        Ok(Self {
            provider,
            runtime,
            endpoint,
        })
    }

    pub fn tracer(&self) -> Tracer {
        self.provider.tracer("paybind")
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Flushes the spans still buffered (within the batch processor's own
    /// timeout), then stops the exporter's runtime.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("OTLP exporter: flushing on shutdown failed: {e}");
        }
        self.runtime.shutdown_background();
    }
}

/// The tonic exporter, each export spawned on the exporter's runtime.
#[derive(Debug)]
struct OnRuntime {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    runtime: tokio::runtime::Handle,
}

impl SpanExporter for OnRuntime {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let inner = self.inner.clone();
        let task = self.runtime.spawn(async move { inner.export(batch).await });
        async move {
            task.await
                .unwrap_or_else(|e| Err(OTelSdkError::InternalFailure(e.to_string())))
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called while the provider is built, before any export: the only
        // reference.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}
