//! The client of merchants' `NotificationService`: payment-svc's own
//! certificate, over mTLS, one lazily connected channel per endpoint.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use paybind_proto::merchant::v1::{
    notification_service_client::NotificationServiceClient, NotifyBatchRequest, NotifyRequest,
};
use paybind_shared::{
    telemetry::rpc::{ClientTrace, ClientTraceLayer},
    tls::TlsFiles,
};
use tonic::{transport::Channel, Code, Request};
use tower::Layer;

use super::convert;
use crate::domain::{
    deliveries::{AttemptOutcome, Notifier, NotifyEndpoint, NotifyFailure},
    events::Event,
};

/// What an attempt's `detail` keeps of an error: enough to act on.
const DETAIL_MAX: usize = 300;
/// How long an endpoint that answered `NotifyBatch` with UNIMPLEMENTED is
/// sent one event per call before batches are tried again (it may have
/// been upgraded meanwhile).
const SINGLE_ONLY_FOR: Duration = Duration::from_secs(600);
/// Single calls made at once for one batch sent one event per call.
const EACH_AT_ONCE: usize = 8;

pub struct GrpcNotifier {
    /// payment-svc's client certificate, and the CA of the merchants'
    /// server certificates.
    tls: TlsFiles,
    channels: Mutex<HashMap<(String, String), Channel>>,
    /// Endpoints that do not take batches, and since when.
    single_only: Mutex<HashMap<String, Instant>>,
}

impl GrpcNotifier {
    /// Fails at start if the certificate or the CA cannot be read.
    pub fn new(tls: TlsFiles) -> anyhow::Result<Arc<Self>> {
        tls.client_config("localhost")?;
        Ok(Arc::new(Self {
            tls,
            channels: Mutex::new(HashMap::new()),
            single_only: Mutex::new(HashMap::new()),
        }))
    }

    fn client(
        &self,
        endpoint: &NotifyEndpoint,
        deadline: Duration,
    ) -> anyhow::Result<NotificationServiceClient<ClientTrace<Channel>>> {
        let key = (endpoint.url.clone(), endpoint.server_name.clone());
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| anyhow::anyhow!("notifier channels poisoned"))?;
        let channel = match channels.get(&key) {
            Some(channel) => channel.clone(),
            None => {
                let channel = Channel::from_shared(endpoint.url.clone())?
                    .tls_config(self.tls.client_config(&endpoint.server_name)?)?
                    .connect_timeout(deadline)
                    .tcp_nodelay(true)
                    .connect_lazy();
                channels.insert(key, channel.clone());
                channel
            }
        };
        Ok(NotificationServiceClient::new(
            ClientTraceLayer.layer(channel),
        ))
    }
}

impl GrpcNotifier {
    /// Whether `endpoint` said lately that it takes no batches.
    fn takes_batches(&self, endpoint: &NotifyEndpoint) -> bool {
        let mut single_only = self.single_only.lock().unwrap_or_else(|p| p.into_inner());
        match single_only.get(&endpoint.url) {
            Some(since) if since.elapsed() < SINGLE_ONLY_FOR => false,
            Some(_) => {
                single_only.remove(&endpoint.url);
                true
            }
            None => true,
        }
    }

    /// Each event in a call of its own, `EACH_AT_ONCE` at a time, the
    /// answers in order.
    async fn each(
        &self,
        endpoint: &NotifyEndpoint,
        notifications: &[(&Event, u32)],
        deadline: Duration,
    ) -> Vec<Result<(), NotifyFailure>> {
        use futures::StreamExt as _;
        let calls: Vec<_> = notifications
            .iter()
            .map(|(event, attempt)| self.notify(endpoint, event, *attempt, deadline))
            .collect();
        futures::stream::iter(calls)
            .buffered(EACH_AT_ONCE)
            .collect()
            .await
    }
}

fn notify_request(event: &Event, attempt: u32) -> NotifyRequest {
    NotifyRequest {
        event: Some(convert::event(event.clone())),
        attempt: i32::try_from(attempt).unwrap_or(i32::MAX),
    }
}

fn unreachable(endpoint: &NotifyEndpoint, e: &anyhow::Error) -> NotifyFailure {
    // Its own files or the registered URL: told in payment-svc's log, not
    // to the merchant.
    tracing::warn!(error = %e, url = %endpoint.url, "cannot connect to a notification endpoint");
    NotifyFailure {
        outcome: AttemptOutcome::Unreachable,
        detail: "payment-svc could not set up a connection to this endpoint".into(),
    }
}

fn timed_out(deadline: Duration) -> NotifyFailure {
    NotifyFailure {
        outcome: AttemptOutcome::TimedOut,
        detail: format!("no answer within {} ms", deadline.as_millis()),
    }
}

/// An error status as an attempt's outcome.
fn failed(status: &tonic::Status) -> NotifyFailure {
    let outcome = match status.code() {
        Code::Unavailable => AttemptOutcome::Unreachable,
        Code::DeadlineExceeded => AttemptOutcome::TimedOut,
        _ => AttemptOutcome::Refused,
    };
    NotifyFailure {
        outcome,
        detail: detail(format!("{:?}: {}", status.code(), status.message())),
    }
}

fn detail(text: String) -> String {
    let mut text = text.replace(['\n', '\r'], " ");
    if text.len() > DETAIL_MAX {
        let mut cut = DETAIL_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[async_trait]
impl Notifier for GrpcNotifier {
    async fn notify(
        &self,
        endpoint: &NotifyEndpoint,
        event: &Event,
        attempt: u32,
        deadline: Duration,
    ) -> Result<(), NotifyFailure> {
        let mut client = self
            .client(endpoint, deadline)
            .map_err(|e| unreachable(endpoint, &e))?;
        let mut request = Request::new(notify_request(event, attempt));
        request.set_timeout(deadline);
        match tokio::time::timeout(deadline, client.notify(request)).await {
            Err(_) => Err(timed_out(deadline)),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(failed(&status)),
        }
    }

    async fn notify_many(
        &self,
        endpoint: &NotifyEndpoint,
        notifications: &[(&Event, u32)],
        deadline: Duration,
    ) -> Vec<Result<(), NotifyFailure>> {
        if notifications.len() < 2 || !self.takes_batches(endpoint) {
            return self.each(endpoint, notifications, deadline).await;
        }
        let every = |failure: NotifyFailure| vec![Err(failure); notifications.len()];
        let mut client = match self.client(endpoint, deadline) {
            Ok(client) => client,
            Err(e) => return every(unreachable(endpoint, &e)),
        };
        let mut request = Request::new(NotifyBatchRequest {
            notifications: notifications
                .iter()
                .map(|(event, attempt)| notify_request(event, *attempt))
                .collect(),
        });
        request.set_timeout(deadline);
        match tokio::time::timeout(deadline, client.notify_batch(request)).await {
            Err(_) => every(timed_out(deadline)),
            Ok(Ok(_)) => vec![Ok(()); notifications.len()],
            // Down or too slow: the same for each of them.
            Ok(Err(status))
                if matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded) =>
            {
                every(failed(&status))
            }
            Ok(Err(status)) => {
                if status.code() == Code::Unimplemented {
                    tracing::info!(url = %endpoint.url, "a notification endpoint takes no batches; sending one event per call");
                    self.single_only
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(endpoint.url.clone(), Instant::now());
                }
                // Refused as a batch: each event gets an answer of its own
                // (one the merchant cannot apply holds up no other).
                self.each(endpoint, notifications, deadline).await
            }
        }
    }
}
