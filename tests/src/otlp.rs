//! An OTLP/gRPC trace receiver for the tests (and, as the `otlp-receiver`
//! binary, the tracing backend's stand-in in the compose check): it keeps
//! every export request it is sent, as decoded spans and as the bytes that
//! came over the wire, so a test can follow a trace across services and
//! scan everything exported for secrets.
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        trace_service_server::{TraceService, TraceServiceServer},
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    },
    common::v1::{any_value::Value, AnyValue, KeyValue},
};
use prost::Message as _;
use serde::Serialize;

/// One exported span, flattened.
#[derive(Debug, Clone, Serialize)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// The `service.name` of the exporting resource.
    pub service_name: String,
    /// OTLP's span kind: 2 server, 3 client, 1 internal.
    pub kind: i32,
    pub attributes: Vec<(String, String)>,
}

#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    /// Every export request as it was encoded on the wire.
    raw: Vec<Vec<u8>>,
}

/// What the receiver has been sent so far.
#[derive(Clone, Default)]
pub struct Collected(Arc<Mutex<Received>>);

impl Collected {
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.lock().spans.clone()
    }

    /// Every byte exported so far, request after request.
    pub fn raw_bytes(&self) -> Vec<u8> {
        self.lock().raw.concat()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Received> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(list: &[KeyValue]) -> Vec<(String, String)> {
    list.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

#[tonic::async_trait]
impl TraceService for Collected {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        let mut received = self.lock();
        received.raw.push(request.encode_to_vec());
        for resource_spans in &request.resource_spans {
            let service_name = resource_spans
                .resource
                .as_ref()
                .and_then(|r| {
                    r.attributes
                        .iter()
                        .find(|kv| kv.key == "service.name")
                        .map(|kv| text(kv.value.as_ref()))
                })
                .unwrap_or_default();
            for scope in &resource_spans.scope_spans {
                for span in &scope.spans {
                    received.spans.push(ReceivedSpan {
                        trace_id: hex::encode(&span.trace_id),
                        span_id: hex::encode(&span.span_id),
                        parent_span_id: hex::encode(&span.parent_span_id),
                        name: span.name.clone(),
                        service_name: service_name.clone(),
                        kind: span.kind,
                        attributes: attributes(&span.attributes),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A receiver on `addr` (plain gRPC, as collectors inside a cluster
/// usually listen), serving until the returned handle is dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    pub collected: Collected,
    _task: AbortOnDrop,
}

/// Stops the receiver's server when the receiver goes.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Receiver {
    pub async fn start(addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let collected = Collected::default();
        let service = TraceServiceServer::new(collected.clone());
        let task = tokio::spawn(async move {
            let incoming = tokio_stream_listener(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        Ok(Self {
            addr,
            collected,
            _task: AbortOnDrop(task),
        })
    }

    /// `http://ADDR`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn tokio_stream_listener(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    })
}
