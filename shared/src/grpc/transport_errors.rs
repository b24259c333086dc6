//! Errors that tonic makes itself, before a handler runs — a request body
//! that is not the method's protobuf message, or one over the size limit —
//! come without a reason. This response map gives them one, as every other
//! paybind error has, and the status a client should act on: the bytes were
//! the client's, so INVALID_ARGUMENT / RESOURCE_EXHAUSTED, not INTERNAL.
use tonic::{body::Body, Code, Status};

use super::{ErrorStatus, MAX_REQUEST_BYTES};

/// Gives a reason to an error response that has none.
pub fn with_reason(response: http::Response<Body>) -> http::Response<Body> {
    let Some(status) = response.extensions().get::<Status>() else {
        return response;
    };
    if status.code() == Code::Ok || !status.details().is_empty() {
        return response;
    }
    let message = status.message();
    let mapped = match status.code() {
        // prost's DecodeError, as tonic reports it.
        Code::Internal if message.starts_with("failed to decode Protobuf message") => {
            ErrorStatus::new(
                Code::InvalidArgument,
                "MALFORMED_REQUEST",
                "the request body is not a valid protobuf message of this method's request type",
            )
        }
        Code::OutOfRange if message.contains("message length too large") => ErrorStatus::new(
            Code::ResourceExhausted,
            "MESSAGE_TOO_LARGE",
            format!("a request may be at most {MAX_REQUEST_BYTES} bytes"),
        )
        .meta("limit_bytes", MAX_REQUEST_BYTES),
        Code::Internal => {
            tracing::error!(message, "internal error without a reason");
            ErrorStatus::new(Code::Internal, "INTERNAL", "internal error")
        }
        _ => return response,
    };
    mapped.build().into_http()
}
