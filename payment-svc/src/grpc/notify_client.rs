//! The client of merchants' `NotificationService`: payment-svc's own
//! certificate, over mTLS, one lazily connected channel per endpoint.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use paybind_proto::merchant::v1::{
    notification_service_client::NotificationServiceClient, NotifyRequest,
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

pub struct GrpcNotifier {
    /// payment-svc's client certificate, and the CA of the merchants'
    /// server certificates.
    tls: TlsFiles,
    channels: Mutex<HashMap<(String, String), Channel>>,
}

impl GrpcNotifier {
    /// Fails at start if the certificate or the CA cannot be read.
    pub fn new(tls: TlsFiles) -> anyhow::Result<Arc<Self>> {
        tls.client_config("localhost")?;
        Ok(Arc::new(Self {
            tls,
            channels: Mutex::new(HashMap::new()),
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
        let mut client = self.client(endpoint, deadline).map_err(|e| {
            // Its own files or the registered URL: told in payment-svc's
            // log, not to the merchant.
            tracing::warn!(error = %e, url = %endpoint.url, "cannot connect to a notification endpoint");
            NotifyFailure {
                outcome: AttemptOutcome::Unreachable,
                detail: "payment-svc could not set up a connection to this endpoint".into(),
            }
        })?;
        let mut request = Request::new(NotifyRequest {
            event: Some(convert::event(event.clone())),
            attempt: i32::try_from(attempt).unwrap_or(i32::MAX),
        });
        request.set_timeout(deadline);
        match tokio::time::timeout(deadline, client.notify(request)).await {
            Err(_) => Err(NotifyFailure {
                outcome: AttemptOutcome::TimedOut,
                detail: format!("no answer within {} ms", deadline.as_millis()),
            }),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => {
                let outcome = match status.code() {
                    Code::Unavailable => AttemptOutcome::Unreachable,
                    Code::DeadlineExceeded => AttemptOutcome::TimedOut,
                    _ => AttemptOutcome::Refused,
                };
                Err(NotifyFailure {
                    outcome,
                    detail: detail(format!("{:?}: {}", status.code(), status.message())),
                })
            }
        }
    }
}
