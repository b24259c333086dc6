//! Shop errors on the wire. payment-svc's refusals pass through unchanged,
//! with their reasons, so a caller sees e.g. CARD_DECLINED or WRONG_CODE.
use paybind_shared::grpc::ErrorStatus;
use tonic::{Code, Status};

use crate::domain::{
    payment::{Refusal, RefusalKind},
    ShopError,
};

impl From<ShopError> for Status {
    fn from(err: ShopError) -> Self {
        let message = err.to_string();
        let status = |code, reason| ErrorStatus::new(code, reason, message.clone());
        match err {
            ShopError::Invalid(rejected) => ErrorStatus::rejected(&rejected),
            ShopError::UserNotFound => status(Code::NotFound, "USER_NOT_FOUND"),
            ShopError::UserExists => status(Code::AlreadyExists, "USER_EXISTS"),
            // The storefront's sign-in: no RPC signs in, but the mapping
            // stays exhaustive.
            ShopError::WrongCredentials => status(Code::Unauthenticated, "WRONG_CREDENTIALS"),
            ShopError::TooManyAttempts => status(Code::ResourceExhausted, "TOO_MANY_ATTEMPTS"),
            ShopError::OrderNotFound => status(Code::NotFound, "ORDER_NOT_FOUND"),
            ShopError::SessionNotFound => status(Code::NotFound, "SESSION_NOT_FOUND"),
            ShopError::NoCardOnFile => status(Code::FailedPrecondition, "NO_CARD_ON_FILE"),
            ShopError::OrderNotRefundable => {
                status(Code::FailedPrecondition, "ORDER_NOT_REFUNDABLE")
            }
            ShopError::IdempotencyKeyReused => {
                status(Code::InvalidArgument, "IDEMPOTENCY_KEY_REUSED").field("idempotency_key")
            }
            ShopError::PaymentUnavailable { order_id } => {
                let s = status(Code::Unavailable, "PAYMENT_SERVICE_UNAVAILABLE");
                match order_id {
                    Some(id) => s.meta("order_id", id),
                    None => s,
                }
            }
            ShopError::Refused(refusal) => return refused(refusal),
            ShopError::DatabaseUnavailable => status(Code::Unavailable, "DATABASE_UNAVAILABLE")
                .retry_after(std::time::Duration::from_secs(1)),
            ShopError::Store(e) => {
                tracing::error!(error = %e, "store error");
                ErrorStatus::new(Code::Internal, "INTERNAL", "internal error")
            }
            ShopError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                ErrorStatus::new(Code::Internal, "INTERNAL", "internal error")
            }
        }
        .build()
    }
}

/// payment-svc's refusal as payment-svc sent it: code, reason, metadata,
/// rejected fields, retry delay.
fn refused(r: Refusal) -> Status {
    let code = match r.kind {
        RefusalKind::InvalidArgument => Code::InvalidArgument,
        RefusalKind::FailedPrecondition => Code::FailedPrecondition,
        RefusalKind::NotFound => Code::NotFound,
        RefusalKind::AlreadyExists => Code::AlreadyExists,
        RefusalKind::PermissionDenied => Code::PermissionDenied,
        RefusalKind::Unauthenticated => Code::Unauthenticated,
        RefusalKind::OutOfRange => Code::OutOfRange,
        RefusalKind::Unimplemented => Code::Unimplemented,
    };
    ErrorStatus::passed_on(
        code,
        r.reason,
        r.message,
        r.metadata.into_iter().collect(),
        r.violations,
        r.retry_after,
    )
    .build()
}
