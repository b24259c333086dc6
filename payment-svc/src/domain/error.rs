//! The domain's errors. Each maps to one gRPC status and reason in
//! `grpc::errors`; none carries a secret (no card number, ID number, CVV, code
//! or token ever reaches a message).
use std::time::Duration;

use super::acquirer::DeclineReason;
use crate::store::StoreError;

/// A value that failed its parse: the reason code and a message for a human.
/// The request field is attached by the caller, which knows the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub reason: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// Names the request field at fault, e.g. `card.number`.
    pub fn at(self, field: &'static str) -> DomainError {
        DomainError::Invalid {
            field,
            reason: self.reason,
            message: self.message,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
        message: String,
    },
    #[error("the client certificate does not belong to a registered merchant")]
    UnknownMerchant,
    #[error("this merchant is not allowed to send card data itself (direct entry)")]
    DirectEntryNotAllowed,
    #[error("bind session not found")]
    SessionNotFound,
    #[error("the bind session has expired; start a new one")]
    SessionExpired,
    #[error("the bind session has failed after too many attempts; start a new one")]
    SessionFailed,
    #[error("the bind session is {status}; {hint}")]
    SessionState {
        status: &'static str,
        hint: &'static str,
    },
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
    #[error("no binding with this token for this merchant user")]
    TokenNotFound,
    #[error("the binding was revoked")]
    BindingRevoked,
    #[error("the payment exceeds the binding's auth-free limits")]
    LimitExceeded {
        per_payment_limit: i64,
        remaining_today: i64,
    },
    #[error("the idempotency key was used before with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this idempotency key is still in progress; retry shortly")]
    RequestInProgress,
    #[error("payment not found")]
    PaymentNotFound,
    #[error("only a succeeded payment can be refunded")]
    PaymentNotRefundable,
    #[error("the refund exceeds what is left to refund ({refundable} minor units)")]
    RefundExceedsPayment { refundable: i64 },
    #[error("the card network did not answer; retry with the same idempotency key")]
    AcquirerUnavailable,
    #[error("the SMS gateway is not available")]
    SmsUnavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type DomainResult<T> = Result<T, DomainError>;
