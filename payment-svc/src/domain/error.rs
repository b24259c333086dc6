//! The domain's errors. Each maps to one gRPC status and reason in
//! `grpc::errors`; none carries a secret (no card number, ID number, CVV, code
//! or token ever reaches a message).
use std::time::Duration;

use std::sync::Arc;

use paybind_shared::{batch::BatchError, db::StoreError, model::SessionStatus};

use super::acquirer::DeclineReason;

pub use paybind_shared::fields::{Invalid, Rejected};

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// One or more request fields were refused; nothing changed.
    #[error("{0}")]
    Invalid(#[from] Rejected),
    #[error("the client certificate is not one registered for a merchant")]
    UnknownMerchant,
    #[error("this client certificate was revoked; use the merchant's current certificate")]
    CertificateRevoked,
    #[error("this merchant is disabled; contact the payment institution")]
    MerchantDisabled,
    #[error("this merchant is not allowed to send card data itself (direct entry)")]
    DirectEntryNotAllowed,
    #[error("bind session not found")]
    SessionNotFound,
    #[error("the bind session has expired; start a new one")]
    SessionExpired,
    #[error("the bind session has failed after too many attempts; start a new one")]
    SessionFailed,
    #[error("the bind session is {}; {hint}", describe(*status))]
    SessionState {
        status: SessionStatus,
        hint: &'static str,
    },
    #[error("the card could not be verified with its issuer: check the card and the name, ID number and phone registered with the bank, or use another card; {attempts_left} attempt(s) left")]
    CardNotVerified { attempts_left: u32 },
    #[error("the card was declined ({reason}); {attempts_left} attempt(s) left")]
    CardDeclined {
        reason: DeclineReason,
        attempts_left: u32,
    },
    #[error("wrong code; {tries_left} tries left")]
    WrongCode { tries_left: u32 },
    #[error("the code has expired; ask for a new one")]
    CodeExpired,
    #[error("a code was sent too recently or too often; retry in {} s", retry_after.as_secs())]
    ResendThrottled { retry_after: Duration },
    #[error("too many attempts for this {scope}; retry in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        /// merchant, card, phone or session.
        scope: &'static str,
        retry_after: Duration,
    },
    #[error("no binding with this token for this merchant user")]
    TokenNotFound,
    #[error("the binding was revoked")]
    BindingRevoked,
    #[error("the binding's card has expired; bind it again with its new expiry")]
    CardExpired,
    #[error("the payment exceeds the binding's auth-free limits")]
    LimitExceeded {
        per_payment_limit: i64,
        remaining_today: i64,
    },
    #[error("the amount is above the merchant's limit for a BindAndPay ({limit} minor units)")]
    BindAndPayLimitExceeded { limit: i64 },
    #[error("the idempotency key was used before with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this idempotency key is still in progress; retry shortly")]
    RequestInProgress,
    #[error("payment not found")]
    PaymentNotFound,
    #[error("no delivery of this event for this merchant")]
    DeliveryNotFound,
    #[error("events after this cursor were purged (the feed keeps 30 days): read from an empty cursor, and reconcile orders and bindings with GetPayment and ListBindings")]
    CursorExpired,
    #[error("only a succeeded payment can be refunded")]
    PaymentNotRefundable,
    #[error("the refund exceeds what is left to refund ({refundable} minor units)")]
    RefundExceedsPayment { refundable: i64 },
    #[error("the card network did not answer; retry with the same idempotency key")]
    AcquirerUnavailable,
    #[error("the SMS gateway is not available")]
    SmsUnavailable,
    /// The database did not answer or broke off (after tries inside the
    /// service): the request may be sent again, with the same key.
    #[error("the payment database is unavailable; retry with the same idempotency key")]
    DatabaseUnavailable,
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl DomainError {
    /// A store failure: transient ones are the database being unavailable.
    pub fn store(e: StoreError) -> Self {
        if e.is_transient() {
            tracing::warn!(error = %e, "database unavailable");
            Self::DatabaseUnavailable
        } else {
            Self::Store(e)
        }
    }
}

impl From<BatchError<Arc<StoreError>>> for DomainError {
    fn from(e: BatchError<Arc<StoreError>>) -> Self {
        match e {
            BatchError::Write(e) if e.is_transient() => {
                tracing::warn!(error = %e, "database unavailable");
                Self::DatabaseUnavailable
            }
            other => Self::Internal(anyhow::anyhow!("{other}")),
        }
    }
}

/// A session status in words, for messages.
fn describe(status: SessionStatus) -> &'static str {
    match status {
        SessionStatus::Open => "open",
        SessionStatus::AwaitingVerification => "awaiting verification",
        SessionStatus::Completed => "completed",
        SessionStatus::Failed => "failed",
        SessionStatus::Expired => "expired",
    }
}

pub type DomainResult<T> = Result<T, DomainError>;

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        Self::store(e)
    }
}
