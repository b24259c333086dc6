//! The charges this process is making right now. A charge in flight here is
//! never taken over (by a retry or by recovery); one whose row says this
//! process owns it but that is not here was abandoned by this process (its
//! request ended before the outcome was recorded) and may be finished.
use paybind_shared::ids::PaymentId;

pub type InFlight = paybind_shared::in_flight::InFlight<PaymentId>;
