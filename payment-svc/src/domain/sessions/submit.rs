//! The shopper's information for an open session: parsed, the card checked
//! with the acquirer, the data sealed, and a one-time code sent; and sending
//! the code again.
use std::time::Duration;

use paybind_shared::{
    clock::{now_ms, LocalDate},
    fields::{AllOk, At},
    ids::SessionId,
    model::SessionStatus,
    money::format_minor,
};

use super::{require_status, FailedAttempt, RawSubmission, SessionView, Submission};
use crate::domain::{
    acquirer::{CardRef, HolderClaim, VerifyError},
    card::{parse_expiry, CardNumber, Cvv},
    error::{DomainError, DomainResult},
    merchants::Merchant,
    model::{session_owner, BindSession, Holder, SentCode, SessionState, Submitted, VaultedCard},
    otp,
    shopper::{FullName, IdNumber, Phone},
    vault::Purpose,
    velocity::Counter,
    Services,
};
use crate::store::CardCheck;

impl Submission {
    /// Parses a submission's fields, every one: the error lists each field
    /// at fault by its request path.
    pub fn parse(raw: &RawSubmission<'_>, today: LocalDate) -> DomainResult<Self> {
        let card = CardNumber::parse(raw.card_number).at("card.number");
        let brand = card.as_ref().ok().map(|c| c.brand());
        let (name, id_number, phone, card, expiry, cvv) = (
            FullName::parse(raw.full_name).at("shopper.full_name"),
            IdNumber::parse(raw.id_number, today).at("shopper.id_number"),
            Phone::parse(raw.phone).at("shopper.phone"),
            card,
            parse_expiry(
                raw.expiry_month,
                raw.expiry_year,
                today,
                ("card.expiry_month", "card.expiry_year"),
            ),
            Cvv::parse(raw.cvv, brand).at("card.cvv"),
        )
            .all_ok()?;
        Ok(Submission {
            name,
            id_number,
            phone,
            card,
            expiry,
            cvv,
        })
    }
}

impl Services {
    /// Parses a submission against today's date in the service's zone
    /// (expiry, birth date), so it happens here rather than in the handler.
    pub fn parse_submission(&self, raw: &RawSubmission<'_>) -> DomainResult<Submission> {
        Submission::parse(raw, self.local_date(now_ms()))
    }

    /// The shopper's information for an OPEN session: the card's issuer
    /// verifies the card and that the shopper is its holder, the data is
    /// sealed, and a code goes to the phone the issuer has on file.
    pub async fn submit(
        &self,
        merchant: &Merchant,
        session_id: &SessionId,
        submission: Submission,
    ) -> DomainResult<SessionView> {
        let mut session = self.load_session(merchant, session_id).await?;
        require_status(&session, SessionStatus::Open)?;

        let card = CardRef {
            number: &submission.card,
            expiry: submission.expiry,
            cvv: Some(&submission.cvv),
        };
        let claim = HolderClaim {
            name: &submission.name,
            id_number: &submission.id_number,
            phone: &submission.phone,
        };
        let digits = submission.card.expose_digits().as_bytes();
        let fingerprint = self.card_fingerprint(&merchant.id, digits);
        // Card testing: a card, and a merchant's cards, are checked with
        // the issuer only so often.
        let card_key = self
            .fingerprints
            .mac_hex(&[b"paybind/velocity/card/v1", digits]);
        self.take_allowances(&[
            (Counter::CardChecksPerMerchant, merchant.id.as_str()),
            (Counter::CardChecksPerCard, &card_key),
        ])
        .await?;
        let verified = match self.acquirer.verify_cardholder(&card, &claim).await {
            Ok(holder) => Ok(holder),
            Err(VerifyError::Refused(refusal)) => Err(refusal),
            Err(VerifyError::Unavailable(why)) => {
                tracing::warn!(%session_id, %why, "issuer unavailable at card verification");
                return Err(DomainError::AcquirerUnavailable);
            }
        };
        // Every answer is kept, with its detail: the merchant is told only
        // whether the card was verified.
        self.store
            .record_card_check(&CardCheck {
                merchant_id: merchant.id.clone(),
                session_id: session.id.clone(),
                card_fingerprint: fingerprint.clone(),
                outcome: verified.as_ref().map(|_| ()).map_err(|refusal| *refusal),
                checked_ms: now_ms(),
            })
            .await?;
        let phone_on_file = match verified {
            Ok(holder) => holder.phone_on_file,
            Err(refusal) => {
                let failure = FailedAttempt::NotVerified(refusal);
                return Err(self.record_failed_attempt(session, failure).await);
            }
        };

        self.take_code_allowances(merchant, &phone_on_file).await?;

        // Sealed as this session's: they open nowhere else.
        let owner = session_owner(&session.id);
        let submitted = Submitted {
            card: VaultedCard {
                fingerprint,
                pan: self.vault.seal_for(Purpose::CardNumber, &owner, digits)?,
                brand: submission.card.brand(),
                last4: submission.card.last4().to_owned(),
                expiry: submission.expiry,
            },
            holder: Holder {
                name: submission.name,
                id_number: self.vault.seal_for(
                    Purpose::IdNumber,
                    &owner,
                    submission.id_number.expose().as_bytes(),
                )?,
                // The code goes to the issuer's phone, whatever was typed.
                phone: phone_on_file,
            },
        };
        let now = now_ms();
        let code = otp::generate();
        session.state = SessionState::AwaitingVerification {
            submitted,
            code: SentCode {
                hash: otp::hash(&self.otp_hasher, &session.id, &code),
                expires_ms: now + otp::CODE_TTL_MS,
                tries_left: otp::MAX_TRIES,
                sent_ms: now,
                resends: 0,
            },
        };
        session.last_error = None;
        let session = self.write_state(session, None).await?;
        self.send_code(merchant, &session, &code).await?;
        tracing::info!(session_id = %session.id, "card verified, code sent");
        self.session_view(session).await
    }

    /// A new code for a session awaiting verification, throttled.
    pub async fn resend_code(
        &self,
        merchant: &Merchant,
        session_id: &SessionId,
    ) -> DomainResult<SessionView> {
        let mut session = self.load_session(merchant, session_id).await?;
        require_status(&session, SessionStatus::AwaitingVerification)?;
        let now = now_ms();
        let SessionState::AwaitingVerification { code: sent, .. } = &mut session.state else {
            // Charging: the code was already right.
            return Err(DomainError::SessionState {
                status: SessionStatus::AwaitingVerification,
                hint: "verify the code, or ask for a new one",
            });
        };
        if sent.resends >= otp::MAX_RESENDS {
            return Err(DomainError::ResendThrottled {
                retry_after: Duration::ZERO,
            });
        }
        let since = now - sent.sent_ms;
        let interval = self.policy.resend_interval_ms;
        if since < interval {
            return Err(DomainError::ResendThrottled {
                retry_after: Duration::from_millis(u64::try_from(interval - since).unwrap_or(0)),
            });
        }
        if let Some(phone) = session.code_sent_to() {
            let phone = phone.clone();
            self.take_code_allowances(merchant, &phone).await?;
        }
        let SessionState::AwaitingVerification { code: sent, .. } = &mut session.state else {
            return Err(anyhow::anyhow!("session {} awaits no code", session.id).into());
        };
        let code = otp::generate();
        *sent = SentCode {
            hash: otp::hash(&self.otp_hasher, &session.id, &code),
            expires_ms: now + otp::CODE_TTL_MS,
            tries_left: otp::MAX_TRIES,
            sent_ms: now,
            resends: sent.resends + 1,
        };
        let session = self.write_state(session, None).await?;
        self.send_code(merchant, &session, &code).await?;
        self.session_view(session).await
    }

    /// SMS pumping: codes go to a phone, and for a merchant, only so often.
    async fn take_code_allowances(&self, merchant: &Merchant, phone: &Phone) -> DomainResult<()> {
        let phone_key = self.phone_key(phone.e164());
        self.take_allowances(&[
            (Counter::CodesPerMerchant, merchant.id.as_str()),
            (Counter::CodesPerPhone, &phone_key),
        ])
        .await
    }

    async fn send_code(
        &self,
        merchant: &Merchant,
        session: &BindSession,
        code: &str,
    ) -> DomainResult<()> {
        let Some(phone) = session.code_sent_to() else {
            return Err(anyhow::anyhow!("session {} has no phone to send to", session.id).into());
        };
        let what = match &session.purchase {
            Some(p) => format!(
                "bind your card and pay {}",
                format_minor(p.amount.amount_minor(), p.amount.currency())
            ),
            None => "bind your card".to_owned(),
        };
        let text = format!(
            "[paybind] {code} is your code to {what} at {}. It expires in 5 minutes. Never share it.",
            merchant.display_name
        );
        self.sms.send(phone, &text).await.map_err(|e| {
            tracing::error!(session_id = %session.id, error = %e, "could not send the code");
            DomainError::SmsUnavailable
        })
    }
}
