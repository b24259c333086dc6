//! Opening a session: Bind or BindAndPay, idempotent by key.
use paybind_shared::{clock::now_ms, fields::request_hash, ids::SessionId, model::Presentation};

use super::{accept_currency, NewSession, SessionView};
use crate::{
    domain::{
        error::{DomainError, DomainResult, Invalid},
        merchants::Merchant,
        model::{BindSession, Purchase, SessionState},
        Services,
    },
    store::Inserted,
};

impl Services {
    /// Bind or BindAndPay: opens a session, or returns the one this
    /// idempotency key already opened.
    pub async fn open_session(
        &self,
        merchant: &Merchant,
        new: NewSession,
    ) -> DomainResult<SessionView> {
        if !merchant.allows_return_url(&new.return_url) {
            return Err(Invalid::new(
                "RETURN_URL_NOT_ALLOWED",
                "return_url is not under one of the merchant's registered return URLs",
            )
            .at("return_url")
            .into());
        }
        if let Some(p) = &new.payment {
            accept_currency(merchant, p.amount.currency(), "payment.amount.currency")?;
            if p.amount.amount_minor() > merchant.bind_and_pay_limit.amount_minor() {
                return Err(DomainError::BindAndPayLimitExceeded {
                    limit: merchant.bind_and_pay_limit.amount_minor(),
                });
            }
        }
        let payment = new.payment.as_ref();
        let amount = payment
            .map(|p| p.amount.amount_minor().to_string())
            .unwrap_or_default();
        let request_hash = request_hash(&[
            new.merchant_user_id.as_str(),
            hashed_name(new.presentation),
            &new.return_url,
            new.prefill_name.as_ref().map(|n| n.as_str()).unwrap_or(""),
            new.prefill_phone.as_ref().map(|p| p.e164()).unwrap_or(""),
            payment.map(|p| p.order_id.as_str()).unwrap_or(""),
            &amount,
            payment.map(|p| p.amount.currency().code()).unwrap_or(""),
            payment.map(|p| p.description.as_str()).unwrap_or(""),
        ]);
        let now = now_ms();
        let session = BindSession {
            id: SessionId::generate(),
            merchant_id: merchant.id.clone(),
            merchant_user_id: new.merchant_user_id,
            presentation: new.presentation,
            return_url: new.return_url,
            prefill_name: new.prefill_name,
            prefill_phone: new.prefill_phone,
            purchase: new.payment.map(|p| Purchase {
                order_id: p.order_id,
                amount: p.amount,
                description: p.description,
            }),
            idempotency_key: new.idempotency_key,
            request_hash: request_hash.clone(),
            created_ms: now,
            expires_ms: now + self.policy.session_ttl_ms,
            attempts_left: self.policy.max_card_attempts,
            last_error: None,
            state: SessionState::Open,
            version: 0,
        };
        let session = match self.store.insert_session(&session).await? {
            Inserted::New(session) => {
                self.metrics.session(session.kind(), "opened");
                tracing::info!(session_id = %session.id, merchant_id = %merchant.id, kind = ?session.kind(), "bind session opened");
                session
            }
            Inserted::Existing(session) if session.request_hash == request_hash => session,
            Inserted::Existing(_) => return Err(DomainError::IdempotencyKeyReused),
        };
        self.session_view(session).await
    }
}

/// The presentation as the request hash has always spelled it: a retry of a
/// session opened by an earlier release must still match its hash.
fn hashed_name(p: Presentation) -> &'static str {
    match p {
        Presentation::Redirect => "REDIRECT",
        Presentation::Embedded => "EMBEDDED",
        Presentation::Popup => "POPUP",
    }
}
