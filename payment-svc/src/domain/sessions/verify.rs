//! The shopper's code: completes the binding; for BindAndPay, charges first
//! and binds only if the charge succeeds. A declined card uses an attempt.
use paybind_shared::{
    clock::now_ms,
    ids::{BindingId, PaymentId, SessionId},
    model::SessionStatus,
};

use super::{concurrent, require_status, FailedAttempt, SessionView};
use crate::{
    domain::{
        acquirer::{AcquirerError, CardRef, DeclineReason},
        error::{DomainError, DomainResult},
        merchants::Merchant,
        model::{
            binding_owner, session_owner, AttemptError, BindSession, Binding, BindingState,
            Payment, PaymentState, SessionState, Submitted,
        },
        otp,
        vault::{Purpose, Sealed},
        velocity::Counter,
        Services,
    },
    store::{PaymentOutcome, SessionChange, StoreError},
};

impl Services {
    /// The shopper's code. Completes the binding; for BindAndPay, charges
    /// first and binds only if the charge succeeds. A retry on a completed
    /// session returns it unchanged.
    pub async fn verify_code(
        &self,
        merchant: &Merchant,
        session_id: &SessionId,
        code: &str,
    ) -> DomainResult<SessionView> {
        let mut session = self.load_session(merchant, session_id).await?;
        match &session.state {
            SessionState::Completed { .. } => return self.session_view(session).await,
            // A charge was started and its outcome not recorded (a crash or
            // an acquirer outage): finish it; the acquirer is idempotent.
            SessionState::Charging { .. } => return self.finish_charge(merchant, session).await,
            _ => {}
        }
        require_status(&session, SessionStatus::AwaitingVerification)?;
        let now = now_ms();
        let SessionState::AwaitingVerification {
            submitted,
            code: sent,
        } = &mut session.state
        else {
            return Err(anyhow::anyhow!("session {} awaits no code", session.id).into());
        };
        if sent.expires_ms <= now {
            return Err(DomainError::CodeExpired);
        }
        // Guessing: every try counts, per session (a resend or a new code
        // after a decline does not start over) and per phone.
        let phone_key = self.phone_key(submitted.holder.phone.e164());
        let tries = self
            .take_allowances(&[
                (Counter::CodeTriesPerSession, session.id.as_str()),
                (Counter::CodeTriesPerPhone, &phone_key),
            ])
            .await;
        if let Err(DomainError::RateLimited {
            scope: "session", ..
        }) = tries
        {
            session.state = SessionState::Failed;
            session.last_error = Some(AttemptError::WrongCode);
            self.write_state(session, None).await?;
            return Err(DomainError::SessionFailed);
        }
        tries?;
        let SessionState::AwaitingVerification {
            submitted,
            code: sent,
        } = &mut session.state
        else {
            return Err(anyhow::anyhow!("session {} awaits no code", session.id).into());
        };
        if !otp::matches(&self.otp_hasher, &session.id, code, &sent.hash) {
            sent.tries_left = sent.tries_left.saturating_sub(1);
            let tries_left = sent.tries_left;
            session.last_error = Some(AttemptError::WrongCode);
            if tries_left == 0 {
                session.state = SessionState::Failed;
            }
            self.write_state(session, None).await?;
            return Err(if tries_left == 0 {
                DomainError::SessionFailed
            } else {
                DomainError::WrongCode { tries_left }
            });
        }
        let submitted = submitted.clone();

        let Some(purchase) = session.purchase.clone() else {
            let binding = self.binding_from(merchant, &session, &submitted, now)?;
            session.state = SessionState::Completed {
                binding_id: binding.id.clone(),
                payment_id: None,
            };
            session.last_error = None;
            let session = self.write_state(session, Some(binding)).await?;
            tracing::info!(session_id = %session.id, binding_id = ?session.binding_id(), "binding created");
            return self.session_view(session).await;
        };

        // BindAndPay: record the attempt as PENDING (and the session as
        // CHARGING) before the acquirer is asked, so nothing is charged that
        // is not recorded.
        let payment = Payment {
            id: PaymentId::generate(),
            merchant_id: merchant.id.clone(),
            merchant_user_id: session.merchant_user_id.clone(),
            binding_id: None,
            session_id: Some(session.id.clone()),
            order_id: purchase.order_id,
            amount: purchase.amount,
            description: purchase.description,
            state: PaymentState::Pending,
            counted_day: None,
            refunded_minor: 0,
            shopper_authenticated: true,
            idempotency_key: None,
            request_hash: None,
            created_ms: now,
            updated_ms: now,
        };
        session.state = SessionState::Charging {
            submitted,
            payment_id: payment.id.clone(),
        };
        let session = self
            .write(SessionChange {
                session,
                new_binding: None,
                new_payment: Some(payment),
                payment_final: None,
            })
            .await?;
        self.finish_charge(merchant, session).await
    }

    /// Charges a CHARGING session's payment and records the outcome.
    async fn finish_charge(
        &self,
        merchant: &Merchant,
        session: BindSession,
    ) -> DomainResult<SessionView> {
        let (
            SessionState::Charging {
                submitted,
                payment_id,
            },
            Some(purchase),
        ) = (session.state.clone(), session.purchase.clone())
        else {
            return Err(anyhow::anyhow!("session {} is not charging", session.id).into());
        };
        let number = self.open_card(&submitted.card.chargeable(session_owner(&session.id)))?;
        let card = CardRef {
            number: &number,
            expiry: submitted.card.expiry,
            cvv: None,
        };
        let _charging = self.in_flight.hold(&payment_id);
        let charged = self
            .acquirer
            .charge(&payment_id, &card, purchase.amount)
            .await;
        match charged {
            Ok(acquirer_ref) => {
                self.settle_charge(merchant, session, Ok(acquirer_ref))
                    .await
            }
            Err(AcquirerError::Declined(reason)) => {
                self.settle_charge(merchant, session, Err(reason)).await
            }
            Err(AcquirerError::Unavailable(why)) => {
                tracing::warn!(session_id = %session.id, %why, "acquirer unavailable; the charge will be finished on retry");
                Err(DomainError::AcquirerUnavailable)
            }
        }
    }

    /// Records the outcome of a CHARGING session's charge: approved, the
    /// binding is made and the session completed with its payment, in one
    /// transaction; declined, an attempt is used.
    pub(crate) async fn settle_charge(
        &self,
        merchant: &Merchant,
        mut session: BindSession,
        charged: Result<String, DeclineReason>,
    ) -> DomainResult<SessionView> {
        let SessionState::Charging {
            submitted,
            payment_id,
        } = session.state.clone()
        else {
            return Err(anyhow::anyhow!("session {} is not charging", session.id).into());
        };
        let acquirer_ref = match charged {
            Ok(acquirer_ref) => acquirer_ref,
            Err(reason) => {
                let failure = FailedAttempt::ChargeDeclined { reason, payment_id };
                return Err(self.record_failed_attempt(session, failure).await);
            }
        };
        let now = now_ms();
        let binding = self.binding_from(merchant, &session, &submitted, now)?;
        let session_id = session.id.clone();
        session.state = SessionState::Completed {
            binding_id: binding.id.clone(),
            payment_id: Some(payment_id.clone()),
        };
        session.last_error = None;
        let written = self
            .apply_change(SessionChange {
                session,
                new_binding: Some(binding),
                new_payment: None,
                payment_final: Some(PaymentOutcome {
                    payment_id,
                    state: PaymentState::Succeeded { acquirer_ref },
                    now_ms: now,
                }),
            })
            .await;
        let session = match written {
            Ok(session) => session,
            // Another request finished this session first.
            Err(StoreError::VersionConflict) => {
                let fresh = self.load_session(merchant, &session_id).await?;
                return self.session_view(fresh).await;
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(session_id = %session.id, binding_id = ?session.binding_id(), "bound and paid");
        self.session_view(session).await
    }

    /// A card that failed uses one attempt: the session is OPEN again for
    /// another card, or FAILED when none are left. No binding is created;
    /// what the shopper submitted is forgotten.
    pub(super) async fn record_failed_attempt(
        &self,
        mut session: BindSession,
        failure: FailedAttempt,
    ) -> DomainError {
        session.attempts_left = session.attempts_left.saturating_sub(1);
        let attempts_left = session.attempts_left;
        session.state = if attempts_left == 0 {
            SessionState::Failed
        } else {
            SessionState::Open
        };
        let payment_final = match &failure {
            FailedAttempt::NotVerified(_) => {
                session.last_error = Some(AttemptError::CardNotVerified);
                None
            }
            FailedAttempt::ChargeDeclined { reason, payment_id } => {
                session.last_error = Some(AttemptError::CardDeclined);
                Some(PaymentOutcome {
                    payment_id: payment_id.clone(),
                    state: PaymentState::Declined { reason: *reason },
                    now_ms: now_ms(),
                })
            }
        };
        let change = SessionChange {
            session,
            new_binding: None,
            new_payment: None,
            payment_final,
        };
        match self.apply_change(change).await {
            Ok(session) => match failure {
                FailedAttempt::NotVerified(refusal) => {
                    // The detail is for payment-svc's own records and logs
                    // (card_checks); the merchant learns only that the card
                    // could not be verified.
                    tracing::info!(session_id = %session.id, %refusal, attempts_left, "card not verified");
                    DomainError::CardNotVerified { attempts_left }
                }
                FailedAttempt::ChargeDeclined { reason, .. } => {
                    tracing::info!(session_id = %session.id, %reason, attempts_left, "card declined");
                    DomainError::CardDeclined {
                        reason,
                        attempts_left,
                    }
                }
            },
            Err(e) => concurrent(e),
        }
    }

    /// Joins the session's merchant information with the shopper's: the
    /// binding information.
    fn binding_from(
        &self,
        merchant: &Merchant,
        session: &BindSession,
        submitted: &Submitted,
        now: i64,
    ) -> DomainResult<Binding> {
        // The sealed numbers move from the session to the binding: opened
        // as the session's, sealed again as the binding's.
        let from = session_owner(&session.id);
        let to = binding_owner(
            &merchant.id,
            &session.merchant_user_id,
            &submitted.card.fingerprint,
        );
        let reseal = |purpose: Purpose, sealed: &Sealed| -> anyhow::Result<Sealed> {
            let plain = self.vault.open_for(purpose, &from, sealed)?;
            self.vault.seal_for(purpose, &to, &plain)
        };
        let mut holder = submitted.holder.clone();
        holder.id_number = reseal(Purpose::IdNumber, &submitted.holder.id_number)?;
        Ok(Binding {
            id: BindingId::from_raw(&rand::random()),
            merchant_id: merchant.id.clone(),
            merchant_user_id: session.merchant_user_id.clone(),
            card: submitted.card.on_file(),
            state: BindingState::Active {
                pan: reseal(Purpose::CardNumber, &submitted.card.pan)?,
                holder,
            },
            limits: merchant.limits,
            usage_day: 0,
            used_on_usage_day: 0,
            created_ms: now,
        })
    }
}
