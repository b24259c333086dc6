//! The one mapping from domain errors to gRPC statuses. The cause of an
//! internal error is logged here and never sent to the client.
use paybind_shared::grpc::ErrorStatus;
use tonic::{Code, Status};

use paybind_shared::{model::SessionStatus, wire::session_status_to_wire};

use crate::domain::error::DomainError;

/// A session status as the contract names it, without the enum's prefix
/// (`OPEN`, `AWAITING_VERIFICATION`, …): metadata `status` of SESSION_STATE.
fn status_name(s: SessionStatus) -> &'static str {
    let name = session_status_to_wire(s).as_str_name();
    name.strip_prefix("BIND_SESSION_STATUS_").unwrap_or(name)
}

impl From<DomainError> for Status {
    fn from(err: DomainError) -> Self {
        let message = err.to_string();
        let status = |code, reason| ErrorStatus::new(code, reason, message.clone());
        match err {
            DomainError::Invalid(rejected) => ErrorStatus::rejected(&rejected),
            DomainError::UnknownMerchant => status(Code::Unauthenticated, "UNKNOWN_MERCHANT"),
            DomainError::CertificateRevoked => status(Code::Unauthenticated, "CERTIFICATE_REVOKED"),
            DomainError::MerchantDisabled => status(Code::PermissionDenied, "MERCHANT_DISABLED"),
            DomainError::DirectEntryNotAllowed => {
                status(Code::PermissionDenied, "DIRECT_ENTRY_NOT_ALLOWED")
            }
            DomainError::SessionNotFound => status(Code::NotFound, "SESSION_NOT_FOUND"),
            DomainError::SessionExpired => status(Code::FailedPrecondition, "SESSION_EXPIRED"),
            DomainError::SessionFailed => status(Code::FailedPrecondition, "SESSION_FAILED"),
            DomainError::SessionState { status: s, .. } => {
                status(Code::FailedPrecondition, "SESSION_STATE").meta("status", status_name(s))
            }
            DomainError::CardNotVerified { attempts_left } => {
                status(Code::FailedPrecondition, "CARD_NOT_VERIFIED")
                    .meta("attempts_left", attempts_left)
            }
            DomainError::CardDeclined {
                reason,
                attempts_left,
            } => status(Code::FailedPrecondition, "CARD_DECLINED")
                .meta("decline_reason", reason.as_str())
                .meta("attempts_left", attempts_left),
            DomainError::WrongCode { tries_left } => {
                status(Code::InvalidArgument, "WRONG_CODE").meta("tries_left", tries_left)
            }
            DomainError::CodeExpired => status(Code::FailedPrecondition, "CODE_EXPIRED"),
            DomainError::ResendThrottled { retry_after } => {
                status(Code::ResourceExhausted, "RESEND_THROTTLED").retry_after(retry_after)
            }
            DomainError::RateLimited { scope, retry_after } => {
                status(Code::ResourceExhausted, "RATE_LIMITED")
                    .meta("scope", scope)
                    .retry_after(retry_after)
            }
            DomainError::TokenNotFound => status(Code::NotFound, "TOKEN_NOT_FOUND"),
            DomainError::BindingRevoked => status(Code::FailedPrecondition, "BINDING_REVOKED"),
            DomainError::CardExpired => status(Code::FailedPrecondition, "CARD_EXPIRED"),
            DomainError::LimitExceeded {
                per_payment_limit,
                remaining_today,
            } => status(Code::FailedPrecondition, "LIMIT_EXCEEDED")
                .meta("per_payment_limit", per_payment_limit)
                .meta("remaining_today", remaining_today),
            DomainError::BindAndPayLimitExceeded { limit } => {
                status(Code::FailedPrecondition, "BIND_AND_PAY_LIMIT_EXCEEDED")
                    .meta("bind_and_pay_limit", limit)
            }
            DomainError::IdempotencyKeyReused => {
                status(Code::InvalidArgument, "IDEMPOTENCY_KEY_REUSED").field("idempotency_key")
            }
            DomainError::RequestInProgress => status(Code::Aborted, "REQUEST_IN_PROGRESS"),
            DomainError::PaymentNotFound => status(Code::NotFound, "PAYMENT_NOT_FOUND"),
            DomainError::DeliveryNotFound => status(Code::NotFound, "DELIVERY_NOT_FOUND"),
            DomainError::CursorExpired => {
                status(Code::OutOfRange, "CURSOR_EXPIRED").field("after_cursor")
            }
            DomainError::PaymentNotRefundable => {
                status(Code::FailedPrecondition, "PAYMENT_NOT_REFUNDABLE")
            }
            DomainError::RefundExceedsPayment { refundable } => {
                status(Code::FailedPrecondition, "REFUND_EXCEEDS_PAYMENT")
                    .meta("refundable", refundable)
            }
            DomainError::AcquirerUnavailable => status(Code::Unavailable, "ACQUIRER_UNAVAILABLE"),
            DomainError::SmsUnavailable => status(Code::Unavailable, "SMS_UNAVAILABLE"),
            DomainError::DatabaseUnavailable => status(Code::Unavailable, "DATABASE_UNAVAILABLE")
                .retry_after(std::time::Duration::from_secs(1)),
            DomainError::Store(e) => {
                tracing::error!(error = %e, "store error");
                ErrorStatus::new(Code::Internal, "INTERNAL", "internal error")
            }
            DomainError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                ErrorStatus::new(Code::Internal, "INTERNAL", "internal error")
            }
        }
        .build()
    }
}
