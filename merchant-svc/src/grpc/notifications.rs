//! `paybind.merchant.v1.NotificationService`: payment-svc pushes each event
//! of the shop's feed here. Only payment-svc may call it
//! ([`NotifierAuth`]); an event is acknowledged (OK) only once it is
//! applied and recorded, so an answer payment-svc does not get is an
//! attempt it makes again, and applying it again is harmless.
use std::sync::Arc;

use paybind_proto::merchant::v1::{
    notification_service_server::NotificationService, NotifyBatchRequest, NotifyBatchResponse,
    NotifyRequest, NotifyResponse,
};
use paybind_shared::{
    grpc::{Authenticate, ErrorStatus},
    tls::{IssuerSet, PeerCertificate},
};
use tonic::{Code, Request, Response, Status};

use crate::{
    domain::{feed::EventSource, payment::FeedEvent, Shop},
    payment_client,
};

/// payment-svc, as the layer admitted it.
#[derive(Debug, Clone)]
pub struct PaymentInstitution;

/// Admits payment-svc's certificate only: its subject CN is
/// `payment.notifier_name` and one of the CAs of `payment.tls.ca_cert`
/// signed it, checked by that CA's key (another CA, even one with the same
/// name, signing a certificate of that name is not enough).
pub struct NotifierAuth {
    pub name: String,
    pub issuers: IssuerSet,
}

fn refused(message: &str) -> Status {
    ErrorStatus::new(Code::PermissionDenied, "CLIENT_NOT_ALLOWED", message).build()
}

impl Authenticate for NotifierAuth {
    type Caller = PaymentInstitution;

    async fn authenticate(
        &self,
        peer: Option<PeerCertificate>,
        method: &str,
    ) -> Result<PaymentInstitution, Status> {
        let Some(peer) = peer else {
            return Err(refused(
                "notifications come from payment-svc's certificate only",
            ));
        };
        let named = peer.common_name.as_deref() == Some(self.name.as_str());
        if !named || !self.issuers.issued(&peer) {
            return Err(refused(
                "notifications come from payment-svc's certificate only",
            ));
        }
        if !matches!(method, "Notify" | "NotifyBatch") {
            return Err(refused("not a method of NotificationService"));
        }
        paybind_shared::telemetry::rpc::record_caller(&self.name);
        Ok(PaymentInstitution)
    }
}

pub struct NotificationApi {
    shop: Arc<Shop>,
}

impl NotificationApi {
    pub fn new(shop: Arc<Shop>) -> Self {
        Self { shop }
    }
}

/// A notification's event, parsed; `field` names where it sits.
fn parsed_event(request: NotifyRequest, field: &str) -> Result<FeedEvent, Status> {
    let NotifyRequest { event, attempt: _ } = request;
    event
        .ok_or_else(|| {
            ErrorStatus::new(Code::InvalidArgument, "MISSING_FIELD", "event is required")
                .field(field)
                .build()
        })
        .and_then(|event| {
            payment_client::feed_event(event).map_err(|e| {
                ErrorStatus::new(Code::InvalidArgument, "MALFORMED_EVENT", e.to_string())
                    .field(field)
                    .build()
            })
        })
}

/// Events in one `NotifyBatch`, at most.
const MAX_BATCH: usize = 500;

#[tonic::async_trait]
impl NotificationService for NotificationApi {
    async fn notify(
        &self,
        request: Request<NotifyRequest>,
    ) -> Result<Response<NotifyResponse>, Status> {
        paybind_shared::grpc::caller::<PaymentInstitution, _>(&request)?;
        let event = parsed_event(request.into_inner(), "event")?;
        self.shop.apply_event(&event, EventSource::Push).await?;
        Ok(Response::new(NotifyResponse {}))
    }

    async fn notify_batch(
        &self,
        request: Request<NotifyBatchRequest>,
    ) -> Result<Response<NotifyBatchResponse>, Status> {
        paybind_shared::grpc::caller::<PaymentInstitution, _>(&request)?;
        let NotifyBatchRequest { notifications } = request.into_inner();
        if notifications.is_empty() || notifications.len() > MAX_BATCH {
            return Err(ErrorStatus::new(
                Code::InvalidArgument,
                "INVALID_BATCH",
                format!("a batch holds 1 to {MAX_BATCH} notifications"),
            )
            .field("notifications")
            .build());
        }
        // Every event parsed before any is applied: a malformed one
        // refuses the batch and changes nothing.
        let events = notifications
            .into_iter()
            .enumerate()
            .map(|(i, n)| parsed_event(n, &format!("notifications[{i}].event")))
            .collect::<Result<Vec<_>, _>>()?;
        self.shop.apply_pushed(&events).await?;
        Ok(Response::new(NotifyBatchResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use paybind_shared::tls::{dev, TlsFiles};

    use super::*;

    fn peer(files: &TlsFiles) -> Option<PeerCertificate> {
        Some(PeerCertificate::from_pem_file(&files.cert).expect("parse"))
    }

    #[tokio::test]
    async fn only_payment_svcs_certificate_from_its_ca_may_notify() {
        let payment_ca = tempfile::tempdir().expect("tempdir");
        let operators_ca = tempfile::tempdir().expect("tempdir");
        let payment_svc = dev::ensure_client(payment_ca.path(), "payment-svc").expect("cert");
        let auth = NotifierAuth {
            name: "payment-svc".into(),
            issuers: IssuerSet::from_pem_file(&payment_svc.ca_cert).expect("CA"),
        };
        for method in ["Notify", "NotifyBatch"] {
            assert!(auth.authenticate(peer(&payment_svc), method).await.is_ok());
        }
        // The name, from another CA the server trusts (the operators').
        let impostor = dev::ensure_client(operators_ca.path(), "payment-svc").expect("cert");
        // Another name, from payment-svc's CA.
        let other = dev::ensure_client(payment_ca.path(), "someone").expect("cert");
        for (who, method) in [
            (peer(&impostor), "Notify"),
            (peer(&other), "Notify"),
            (None, "Notify"),
            (peer(&payment_svc), "Other"),
        ] {
            let err = auth.authenticate(who, method).await.expect_err("refused");
            assert_eq!(err.code(), Code::PermissionDenied);
        }
    }
}
