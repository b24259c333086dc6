//! Any acquirer, with a client span per call to the card network: the
//! method, the payment or refund id and the answer's kind — never the card.
use std::sync::Arc;

use async_trait::async_trait;
use paybind_shared::{
    ids::{PaymentId, RefundId},
    money::Money,
};
use tracing::{field::Empty, Instrument as _};

use super::{
    Acquirer, AcquirerError, CardRef, HolderClaim, Resolution, VerifiedHolder, VerifyError,
};

pub struct Traced(pub Arc<dyn Acquirer>);

fn span(method: &'static str) -> tracing::Span {
    tracing::info_span!(
        "acquirer",
        otel.name = method,
        otel.kind = "client",
        otel.status_code = Empty,
        paybind.payment_id = Empty,
        paybind.refund_id = Empty,
        paybind.answer = Empty,
    )
}

/// Records the answer's kind; an unreachable network is the span's error.
fn answered<T>(span: &tracing::Span, result: &Result<T, AcquirerError>) {
    match result {
        Ok(_) => span.record("paybind.answer", "approved"),
        Err(AcquirerError::Declined(reason)) => span.record("paybind.answer", reason.as_str()),
        Err(AcquirerError::Unavailable(_)) => {
            span.record("otel.status_code", "ERROR");
            span.record("paybind.answer", "unavailable")
        }
    };
}

#[async_trait]
impl Acquirer for Traced {
    async fn verify_cardholder(
        &self,
        card: &CardRef<'_>,
        holder: &HolderClaim<'_>,
    ) -> Result<VerifiedHolder, VerifyError> {
        let span = span("acquirer.verify_cardholder");
        let result = self
            .0
            .verify_cardholder(card, holder)
            .instrument(span.clone())
            .await;
        let answer = match &result {
            Ok(_) => "verified",
            Err(VerifyError::Refused(_)) => "refused",
            Err(VerifyError::Unavailable(_)) => "unavailable",
        };
        span.record("paybind.answer", answer);
        result
    }

    async fn charge(
        &self,
        payment_id: &PaymentId,
        card: &CardRef<'_>,
        amount: Money,
    ) -> Result<String, AcquirerError> {
        let span = span("acquirer.charge");
        span.record("paybind.payment_id", payment_id.as_str());
        let result = self
            .0
            .charge(payment_id, card, amount)
            .instrument(span.clone())
            .await;
        answered(&span, &result);
        result
    }

    async fn refund(
        &self,
        refund_id: &RefundId,
        acquirer_ref: &str,
        amount: Money,
    ) -> Result<(), AcquirerError> {
        let span = span("acquirer.refund");
        span.record("paybind.refund_id", refund_id.as_str());
        let result = self
            .0
            .refund(refund_id, acquirer_ref, amount)
            .instrument(span.clone())
            .await;
        answered(&span, &result);
        result
    }

    async fn resolve(&self, payment_id: &PaymentId) -> Result<Resolution, AcquirerError> {
        let span = span("acquirer.resolve");
        span.record("paybind.payment_id", payment_id.as_str());
        let result = self.0.resolve(payment_id).instrument(span.clone()).await;
        answered(&span, &result);
        result
    }
}
