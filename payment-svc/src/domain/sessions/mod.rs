//! Bind sessions: the state machine (see `model::session`) that the binding
//! pages and direct entry both drive, one step per file: opening a session,
//! submitting the shopper's information (and resending the code), verifying
//! the code (and, for BindAndPay, charging), and reading a session.
//!
//! Every transition is written with the version it was read at, so two
//! concurrent requests can never both complete (or both charge) a session.
use paybind_shared::{
    clock::now_ms,
    ids::{IdempotencyKey, MerchantUserId, OrderId, PaymentId, SessionId},
    model::{Presentation, SessionStatus},
    money::{Currency, Money},
    person::{FullName, Phone},
};
use tracing::Instrument as _;

use super::{
    acquirer::{DeclineReason, VerificationRefusal},
    bindings::BindingView,
    card::{CardNumber, Cvv, Expiry},
    error::{DomainError, DomainResult, Invalid},
    merchants::Merchant,
    metrics::PaymentFlow,
    model::{BindSession, Binding, Payment, SessionState},
    shopper::IdNumber,
    Services,
};
use crate::store::{SessionChange, StoreError};

mod open;
mod page;
mod read;
mod submit;
mod verify;

/// A binding request, parsed.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub merchant_user_id: MerchantUserId,
    pub presentation: Presentation,
    pub return_url: String,
    pub prefill_name: Option<FullName>,
    pub prefill_phone: Option<Phone>,
    pub idempotency_key: IdempotencyKey,
    /// Present for BindAndPay.
    pub payment: Option<PaymentDetails>,
}

/// The purchase of a BindAndPay request.
#[derive(Debug, Clone)]
pub struct PaymentDetails {
    pub order_id: OrderId,
    pub amount: Money,
    pub description: String,
}

/// What the shopper enters, parsed (see `Services::parse_submission`).
pub struct Submission {
    pub name: FullName,
    pub id_number: IdNumber,
    pub phone: Phone,
    pub card: CardNumber,
    pub expiry: Expiry,
    pub cvv: Cvv,
}

/// Why a card used up one of a session's attempts.
pub(crate) enum FailedAttempt {
    /// The issuer would not verify the card and its holder (SubmitBindInfo).
    NotVerified(VerificationRefusal),
    /// BindAndPay's charge was declined (VerifyBind).
    ChargeDeclined {
        reason: DeclineReason,
        payment_id: PaymentId,
    },
}

/// The raw fields of a submission, as they arrive.
pub struct RawSubmission<'a> {
    pub full_name: &'a str,
    pub id_number: &'a str,
    pub phone: &'a str,
    pub card_number: &'a str,
    pub expiry_month: i32,
    pub expiry_year: i32,
    pub cvv: &'a str,
}

/// A session as shown to merchants and pages: with its binding (and token)
/// once completed, and its payment.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub session: BindSession,
    pub status: SessionStatus,
    pub page_url: String,
    pub binding: Option<BindingView>,
    pub payment: Option<Payment>,
}

impl SessionView {
    /// The masked phone the code was sent to, while one is outstanding.
    pub fn code_sent_to(&self) -> Option<String> {
        match self.status {
            SessionStatus::AwaitingVerification => self.session.code_sent_to().map(Phone::masked),
            _ => None,
        }
    }
}

impl Services {
    pub(crate) async fn load_session(
        &self,
        merchant: &Merchant,
        session_id: &SessionId,
    ) -> DomainResult<BindSession> {
        self.store
            .get_session(&merchant.id, session_id)
            .await?
            .ok_or(DomainError::SessionNotFound)
    }

    /// Writes a session transition (and what comes with it).
    async fn write(&self, change: SessionChange) -> DomainResult<BindSession> {
        self.apply_change(change).await.map_err(concurrent)
    }

    /// Every session transition is written here, and counted once written:
    /// a completed or failed session, a BindAndPay payment settled.
    pub(super) async fn apply_change(
        &self,
        change: SessionChange,
    ) -> Result<BindSession, StoreError> {
        let payment = change.payment_final.as_ref().map(|p| p.state.clone());
        let session = self
            .store
            .apply_session_change(change)
            .instrument(tracing::info_span!("store.session_change"))
            .await?;
        self.events_written();
        if let Some(state) = &payment {
            self.metrics.payment_settled(state, PaymentFlow::BindAndPay);
        }
        match session.state {
            SessionState::Completed { .. } => self.metrics.session(session.kind(), "bound"),
            SessionState::Failed => self.metrics.session(session.kind(), "failed"),
            _ => {}
        }
        Ok(session)
    }

    /// Writes a session's new state alone, or with the binding it made.
    async fn write_state(
        &self,
        session: BindSession,
        new_binding: Option<Binding>,
    ) -> DomainResult<BindSession> {
        self.write(SessionChange {
            session,
            new_binding,
            new_payment: None,
            payment_final: None,
        })
        .await
    }
}

fn accept_currency(
    merchant: &Merchant,
    currency: Currency,
    field: &'static str,
) -> DomainResult<()> {
    if currency != merchant.currency {
        return Err(Invalid::new(
            "CURRENCY_NOT_ACCEPTED",
            format!("this merchant charges in {}", merchant.currency),
        )
        .at(field)
        .into());
    }
    Ok(())
}

/// A version conflict means another request changed the session first.
fn concurrent(e: StoreError) -> DomainError {
    match e {
        StoreError::VersionConflict => DomainError::RequestInProgress,
        other => other.into(),
    }
}

/// Refuses the call unless the session is usable now and shows `wanted`.
fn require_status(session: &BindSession, wanted: SessionStatus) -> DomainResult<()> {
    match session.status_at(now_ms()) {
        SessionStatus::Expired => Err(DomainError::SessionExpired),
        SessionStatus::Failed => Err(DomainError::SessionFailed),
        status if status == wanted => Ok(()),
        status @ SessionStatus::Completed => Err(DomainError::SessionState {
            status,
            hint: "it needs nothing more",
        }),
        status @ SessionStatus::Open => Err(DomainError::SessionState {
            status,
            hint: "submit the shopper's information first",
        }),
        status => Err(DomainError::SessionState {
            status,
            hint: "verify the code, or ask for a new one",
        }),
    }
}
