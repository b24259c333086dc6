//! What payment-svc keeps, as the domain speaks of it: merchants, bindings,
//! payments and refunds, and bind sessions with their state machine. The
//! store reads and writes these (and nothing looser); `grpc` shows them to
//! merchants. Plain data: the rules that change them live beside, in
//! `domain`.
mod binding;
mod merchant;
mod payment;
mod session;

pub use binding::{
    binding_owner, session_owner, Binding, BindingState, CardOnFile, ChargeableCard, Holder,
    Limits, Revocation, VaultedCard,
};
pub use merchant::{Merchant, MerchantCertificate, MerchantStatus};
pub use payment::{Payment, PaymentState, Refund};
pub use session::{
    AttemptError, BindSession, Purchase, SentCode, SessionKind, SessionState, Submitted,
};
