//! Bind sessions: the state machine that the binding pages and direct entry
//! both drive.
//!
//! ```text
//! OPEN --submit (card verified, code sent)--> AWAITING_VERIFICATION
//! AWAITING_VERIFICATION --right code, BIND--> COMPLETED (binding)
//! AWAITING_VERIFICATION --right code, BIND_AND_PAY--> CHARGING --approved--> COMPLETED (binding + payment)
//!                                                              --declined--> OPEN (another card) | FAILED
//! OPEN --card declined at verification--> OPEN | FAILED (no attempts left)
//! AWAITING_VERIFICATION --5 wrong codes--> FAILED
//! any unfinished state past its expiry reads as EXPIRED
//! ```
//! Every transition is written with the version it was read at, so two
//! concurrent requests can never both complete (or both charge) a session.
use paybind_shared::{
    ids::new_id,
    money::{format_minor, Currency, Money},
};

use super::{
    acquirer::{AcquirerError, CardRef},
    bindings::BindingView,
    card::{CardBrand, CardNumber, Cvv, Expiry},
    clock::now_ms,
    error::{DomainError, DomainResult, Invalid},
    fields,
    merchants::Merchant,
    otp,
    shopper::{FullName, IdNumber, Phone},
    token::binding_id_from_raw,
    vault::{Purpose, Sealed},
    Services,
};
use crate::store::{
    BindingRow, Inserted, PaymentOutcome, PaymentRow, SessionChange, SessionRow, StoreError,
};

/// How the page is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presentation {
    Redirect,
    Embedded,
    Popup,
}

impl Presentation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redirect => "REDIRECT",
            Self::Embedded => "EMBEDDED",
            Self::Popup => "POPUP",
        }
    }
}

/// The status a session shows (CHARGING shows as AWAITING_VERIFICATION).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Open,
    AwaitingVerification,
    Completed,
    Failed,
    Expired,
}

const OPEN: &str = "OPEN";
const AWAITING: &str = "AWAITING_VERIFICATION";
const CHARGING: &str = "CHARGING";
const COMPLETED: &str = "COMPLETED";
const FAILED: &str = "FAILED";
pub const KIND_BIND: &str = "BIND";
pub const KIND_BIND_AND_PAY: &str = "BIND_AND_PAY";

/// The purchase of a BindAndPay session.
#[derive(Debug, Clone)]
pub struct PaymentDetails {
    pub order_id: String,
    pub amount: Money,
    pub description: String,
}

/// A binding request, parsed.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub merchant_user_id: String,
    pub presentation: Presentation,
    pub return_url: String,
    pub prefill_name: Option<FullName>,
    pub prefill_phone: Option<Phone>,
    pub idempotency_key: String,
    /// Present for BindAndPay.
    pub payment: Option<PaymentDetails>,
}

/// What the shopper enters, parsed. Parsing needs today's date (expiry, birth
/// date), so it happens here rather than in the handler.
pub struct Submission {
    pub name: FullName,
    pub id_number: IdNumber,
    pub phone: Phone,
    pub card: CardNumber,
    pub expiry: Expiry,
    pub cvv: Cvv,
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

/// A session as shown to merchants and pages.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub row: SessionRow,
    pub status: SessionStatus,
    pub page_url: String,
    pub binding: Option<BindingView>,
    pub payment: Option<PaymentRow>,
}

impl SessionView {
    /// The masked phone the code was sent to, while one is outstanding.
    pub fn code_sent_to(&self) -> Option<String> {
        match self.status {
            SessionStatus::AwaitingVerification => self
                .row
                .phone
                .clone()
                .map(|p| Phone::from_stored(p).masked()),
            _ => None,
        }
    }
}

impl Services {
    /// Parses a submission's fields; each error names its request field.
    pub fn parse_submission(&self, raw: &RawSubmission<'_>) -> DomainResult<Submission> {
        let today = self.local_date(now_ms());
        let card = CardNumber::parse(raw.card_number).map_err(|e| e.at("card.number"))?;
        Ok(Submission {
            name: FullName::parse(raw.full_name).map_err(|e| e.at("shopper.full_name"))?,
            id_number: IdNumber::parse(raw.id_number, today)
                .map_err(|e| e.at("shopper.id_number"))?,
            phone: Phone::parse(raw.phone).map_err(|e| e.at("shopper.phone"))?,
            expiry: Expiry::parse(raw.expiry_month, raw.expiry_year, (today.0, today.1))
                .map_err(|e| e.at("card.expiry_month"))?,
            cvv: Cvv::parse(raw.cvv, card.brand()).map_err(|e| e.at("card.cvv"))?,
            card,
        })
    }

    /// Bind or BindAndPay: opens a session, or returns the one this
    /// idempotency key already opened.
    pub async fn open_session(
        &self,
        merchant: &Merchant,
        new: NewSession,
    ) -> DomainResult<SessionView> {
        if !merchant.allows_return_url(&new.return_url) {
            return Err(Invalid::new(
                "RETURN_URL_NOT_ALLOWED",
                "return_url is not under one of the merchant's registered return URLs",
            )
            .at("return_url"));
        }
        if let Some(p) = &new.payment {
            accept_currency(merchant, p.amount.currency(), "payment.amount.currency")?;
        }
        let payment = new.payment.as_ref();
        let amount = payment
            .map(|p| p.amount.amount_minor().to_string())
            .unwrap_or_default();
        let request_hash = fields::request_hash(&[
            new.merchant_user_id.as_str(),
            new.presentation.as_str(),
            new.return_url.as_str(),
            new.prefill_name
                .as_ref()
                .map(FullName::as_str)
                .unwrap_or(""),
            new.prefill_phone.as_ref().map(Phone::e164).unwrap_or(""),
            payment.map(|p| p.order_id.as_str()).unwrap_or(""),
            &amount,
            payment.map(|p| p.amount.currency().code()).unwrap_or(""),
            payment.map(|p| p.description.as_str()).unwrap_or(""),
        ]);
        let now = now_ms();
        let row = SessionRow {
            id: new_id("bs"),
            merchant_id: merchant.id.clone(),
            merchant_user_id: new.merchant_user_id,
            kind: if payment.is_some() {
                KIND_BIND_AND_PAY
            } else {
                KIND_BIND
            }
            .to_owned(),
            presentation: new.presentation.as_str().to_owned(),
            return_url: new.return_url,
            prefill_name: new.prefill_name.map(|n| n.as_str().to_owned()),
            prefill_phone: new.prefill_phone.map(|p| p.e164().to_owned()),
            status: OPEN.to_owned(),
            version: 0,
            created_ms: now,
            expires_ms: now + self.policy.session_ttl_ms,
            attempts_left: self.policy.max_card_attempts,
            idempotency_key: new.idempotency_key,
            request_hash: request_hash.clone(),
            order_id: payment.map(|p| p.order_id.clone()),
            amount_minor: payment.map(|p| p.amount.amount_minor()),
            currency: payment.map(|p| p.amount.currency().code().to_owned()),
            description: payment.map(|p| p.description.clone()),
            shopper_name: None,
            id_number_ct: None,
            id_key_id: None,
            phone: None,
            pan_ct: None,
            pan_key_id: None,
            card_fingerprint: None,
            card_brand: None,
            card_last4: None,
            exp_month: None,
            exp_year: None,
            otp_hash: None,
            otp_expires_ms: None,
            otp_tries_left: 0,
            otp_sent_ms: None,
            otp_resends: 0,
            last_error: None,
            binding_id: None,
            payment_id: None,
        };
        let row = match self.store.insert_session(&row).await? {
            Inserted::New(row) => {
                tracing::info!(session_id = %row.id, merchant_id = %merchant.id, kind = %row.kind, "bind session opened");
                row
            }
            Inserted::Existing(row) if row.request_hash == request_hash => row,
            Inserted::Existing(_) => return Err(DomainError::IdempotencyKeyReused),
        };
        self.session_view(row).await
    }

    pub async fn get_session(
        &self,
        merchant: &Merchant,
        session_id: &str,
    ) -> DomainResult<SessionView> {
        let row = self.load_session(merchant, session_id).await?;
        self.session_view(row).await
    }

    async fn load_session(
        &self,
        merchant: &Merchant,
        session_id: &str,
    ) -> DomainResult<SessionRow> {
        if session_id.is_empty() || session_id.len() > 64 {
            return Err(DomainError::SessionNotFound);
        }
        self.store
            .get_session(&merchant.id, session_id)
            .await?
            .ok_or(DomainError::SessionNotFound)
    }

    /// The session with what it refers to (binding with token, payment).
    pub async fn session_view(&self, row: SessionRow) -> DomainResult<SessionView> {
        let binding = match &row.binding_id {
            Some(id) => match self.store.get_binding(&row.merchant_id, id).await? {
                Some(b) => Some(self.binding_view(b)?),
                None => None,
            },
            None => None,
        };
        let payment = match &row.payment_id {
            Some(id) => self.store.get_payment(&row.merchant_id, id).await?,
            None => None,
        };
        Ok(SessionView {
            status: shown_status(&row, now_ms()),
            page_url: format!(
                "{}/bind/{}",
                self.policy.public_base_url.trim_end_matches('/'),
                row.id
            ),
            row,
            binding,
            payment,
        })
    }

    /// The shopper's information for an OPEN session: the card is verified
    /// with the acquirer, the data sealed, and a code sent to the phone.
    pub async fn submit(
        &self,
        merchant: &Merchant,
        session_id: &str,
        submission: Submission,
    ) -> DomainResult<SessionView> {
        let mut row = self.load_session(merchant, session_id).await?;
        let now = now_ms();
        require_status(&row, now, OPEN)?;

        let card = CardRef {
            number: &submission.card,
            expiry: submission.expiry,
            cvv: Some(&submission.cvv),
        };
        match self.acquirer.verify(&card).await {
            Ok(()) => {}
            Err(AcquirerError::Declined(reason)) => {
                return Err(self.record_decline(row, reason, None).await);
            }
            Err(AcquirerError::Unavailable(why)) => {
                tracing::warn!(session_id, %why, "acquirer unavailable at card verification");
                return Err(DomainError::AcquirerUnavailable);
            }
        }

        let pan = self.vault.seal(
            Purpose::CardNumber,
            submission.card.expose_digits().as_bytes(),
        )?;
        let id = self
            .vault
            .seal(Purpose::IdNumber, submission.id_number.expose().as_bytes())?;
        let code = otp::generate();
        row.shopper_name = Some(submission.name.as_str().to_owned());
        row.id_number_ct = Some(id.blob);
        row.id_key_id = Some(id.key_id);
        row.phone = Some(submission.phone.e164().to_owned());
        row.card_fingerprint = Some(self.fingerprints.mac_hex(&[
            b"paybind/card/v1",
            submission.card.expose_digits().as_bytes(),
        ]));
        row.pan_ct = Some(pan.blob);
        row.pan_key_id = Some(pan.key_id);
        row.card_brand = Some(submission.card.brand().as_str().to_owned());
        row.card_last4 = Some(submission.card.last4().to_owned());
        row.exp_month = Some(i64::from(submission.expiry.month));
        row.exp_year = Some(i64::from(submission.expiry.year));
        row.otp_hash = Some(otp::hash(&self.otp_hasher, &row.id, &code));
        row.otp_expires_ms = Some(now + otp::CODE_TTL_MS);
        row.otp_tries_left = i64::from(otp::MAX_TRIES);
        row.otp_sent_ms = Some(now);
        row.otp_resends = 0;
        row.last_error = None;
        row.status = AWAITING.to_owned();
        let row = self.write(row, None).await?;
        self.send_code(merchant, &row, &code).await?;
        tracing::info!(session_id = %row.id, "card verified, code sent");
        self.session_view(row).await
    }

    /// A new code for a session awaiting verification, throttled.
    pub async fn resend_code(
        &self,
        merchant: &Merchant,
        session_id: &str,
    ) -> DomainResult<SessionView> {
        let mut row = self.load_session(merchant, session_id).await?;
        let now = now_ms();
        require_status(&row, now, AWAITING)?;
        if row.otp_resends >= i64::from(otp::MAX_RESENDS) {
            return Err(DomainError::ResendThrottled {
                retry_after: std::time::Duration::ZERO,
            });
        }
        let since = now - row.otp_sent_ms.unwrap_or(0);
        if since < otp::RESEND_INTERVAL_MS {
            return Err(DomainError::ResendThrottled {
                retry_after: std::time::Duration::from_millis(
                    (otp::RESEND_INTERVAL_MS - since) as u64,
                ),
            });
        }
        let code = otp::generate();
        row.otp_hash = Some(otp::hash(&self.otp_hasher, &row.id, &code));
        row.otp_expires_ms = Some(now + otp::CODE_TTL_MS);
        row.otp_tries_left = i64::from(otp::MAX_TRIES);
        row.otp_sent_ms = Some(now);
        row.otp_resends += 1;
        let row = self.write(row, None).await?;
        self.send_code(merchant, &row, &code).await?;
        self.session_view(row).await
    }

    /// The shopper's code. Completes the binding; for BindAndPay, charges
    /// first and binds only if the charge succeeds. A retry on a completed
    /// session returns it unchanged.
    pub async fn verify_code(
        &self,
        merchant: &Merchant,
        session_id: &str,
        code: &str,
    ) -> DomainResult<SessionView> {
        let mut row = self.load_session(merchant, session_id).await?;
        let now = now_ms();
        if row.status == COMPLETED {
            return self.session_view(row).await;
        }
        if row.status == CHARGING {
            // A charge was started and its outcome not recorded (a crash or
            // an acquirer outage): finish it; the acquirer is idempotent.
            return self.finish_charge(merchant, row).await;
        }
        require_status(&row, now, AWAITING)?;
        if row.otp_expires_ms.unwrap_or(0) <= now {
            return Err(DomainError::CodeExpired);
        }
        let stored = row.otp_hash.clone().unwrap_or_default();
        if !otp::matches(&self.otp_hasher, &row.id, code, &stored) {
            row.otp_tries_left -= 1;
            let tries_left = row.otp_tries_left.max(0) as u32;
            row.last_error = Some("WRONG_CODE".into());
            if tries_left == 0 {
                row.status = FAILED.to_owned();
                row.clear_submission();
            }
            self.write(row, None).await?;
            return Err(if tries_left == 0 {
                DomainError::SessionFailed
            } else {
                DomainError::WrongCode { tries_left }
            });
        }

        if row.kind == KIND_BIND {
            let binding = self.binding_from_submission(merchant, &row, now)?;
            row.status = COMPLETED.to_owned();
            row.last_error = None;
            row.clear_submission();
            let row = self.write(row, Some(binding)).await?;
            tracing::info!(session_id = %row.id, binding_id = ?row.binding_id, "binding created");
            return self.session_view(row).await;
        }

        // BindAndPay: record the attempt as PENDING (and the session as
        // CHARGING) before the acquirer is asked, so nothing is charged that
        // is not recorded.
        let payment = PaymentRow {
            id: new_id("pay"),
            merchant_id: merchant.id.clone(),
            merchant_user_id: row.merchant_user_id.clone(),
            binding_id: None,
            session_id: Some(row.id.clone()),
            order_id: row.order_id.clone().unwrap_or_default(),
            amount_minor: row.amount_minor.unwrap_or(0),
            currency: row.currency.clone().unwrap_or_default(),
            description: row.description.clone().unwrap_or_default(),
            status: "PENDING".into(),
            decline_reason: None,
            acquirer_ref: None,
            counted_day: None,
            refunded_minor: 0,
            shopper_authenticated: true,
            idempotency_key: None,
            request_hash: None,
            created_ms: now,
            updated_ms: now,
        };
        row.status = CHARGING.to_owned();
        row.payment_id = Some(payment.id.clone());
        let row = self
            .store
            .apply_session_change(SessionChange {
                session: row,
                new_binding: None,
                new_payment: Some(payment),
                payment_final: None,
            })
            .await
            .map_err(concurrent)?;
        self.finish_charge(merchant, row).await
    }

    /// Charges a CHARGING session's payment and records the outcome.
    async fn finish_charge(
        &self,
        merchant: &Merchant,
        mut row: SessionRow,
    ) -> DomainResult<SessionView> {
        let session_id = row.id.clone();
        let payment_id = row
            .payment_id
            .clone()
            .ok_or_else(|| anyhow::anyhow!("charging session without payment"))?;
        let amount = Money::parse(
            row.amount_minor.unwrap_or(0),
            row.currency.as_deref().unwrap_or(""),
        )
        .map_err(|e| anyhow::anyhow!("session amount: {e}"))?;
        let pan = self.open_session_card(&row)?;
        let expiry = Expiry {
            month: row.exp_month.unwrap_or(0) as u8,
            year: row.exp_year.unwrap_or(0) as u16,
        };
        let card = CardRef {
            number: &pan,
            expiry,
            cvv: None,
        };
        let now = now_ms();
        match self.acquirer.charge(&payment_id, &card, amount).await {
            Ok(acquirer_ref) => {
                let binding = self.binding_from_submission(merchant, &row, now)?;
                row.status = COMPLETED.to_owned();
                row.last_error = None;
                row.clear_submission();
                let row = self
                    .store
                    .apply_session_change(SessionChange {
                        session: row,
                        new_binding: Some(binding),
                        new_payment: None,
                        payment_final: Some(PaymentOutcome {
                            payment_id,
                            status: "SUCCEEDED".into(),
                            decline_reason: None,
                            acquirer_ref: Some(acquirer_ref),
                            now_ms: now,
                        }),
                    })
                    .await;
                let row = match row {
                    Ok(row) => row,
                    // Another request finished this session first.
                    Err(StoreError::VersionConflict) => {
                        let fresh = self.load_session(merchant, &session_id).await?;
                        return self.session_view(fresh).await;
                    }
                    Err(e) => return Err(e.into()),
                };
                tracing::info!(session_id = %row.id, binding_id = ?row.binding_id, "bound and paid");
                self.session_view(row).await
            }
            Err(AcquirerError::Declined(reason)) => {
                Err(self.record_decline(row, reason, Some(payment_id)).await)
            }
            Err(AcquirerError::Unavailable(why)) => {
                tracing::warn!(session_id = %row.id, %why, "acquirer unavailable; the charge will be finished on retry");
                Err(DomainError::AcquirerUnavailable)
            }
        }
    }

    /// A declined card uses one attempt: the session is OPEN again for
    /// another card, or FAILED when none are left. No binding is created.
    async fn record_decline(
        &self,
        mut row: SessionRow,
        reason: super::acquirer::DeclineReason,
        payment_id: Option<String>,
    ) -> DomainError {
        row.attempts_left -= 1;
        let attempts_left = row.attempts_left.max(0) as u32;
        row.status = if attempts_left == 0 { FAILED } else { OPEN }.to_owned();
        row.last_error = Some("CARD_DECLINED".into());
        row.payment_id = None;
        row.clear_submission();
        let now = now_ms();
        let change = SessionChange {
            session: row,
            new_binding: None,
            new_payment: None,
            payment_final: payment_id.map(|payment_id| PaymentOutcome {
                payment_id,
                status: "DECLINED".into(),
                decline_reason: Some(reason.as_str().to_owned()),
                acquirer_ref: None,
                now_ms: now,
            }),
        };
        match self.store.apply_session_change(change).await {
            Ok(row) => {
                tracing::info!(session_id = %row.id, %reason, attempts_left, "card declined");
                DomainError::CardDeclined {
                    reason,
                    attempts_left,
                }
            }
            Err(e) => concurrent(e),
        }
    }

    fn open_session_card(&self, row: &SessionRow) -> DomainResult<CardNumber> {
        let sealed = Sealed {
            key_id: row.pan_key_id.clone().unwrap_or_default(),
            blob: row.pan_ct.clone().unwrap_or_default(),
        };
        let digits = self.vault.open_string(Purpose::CardNumber, &sealed)?;
        Ok(CardNumber::parse(&digits).map_err(|_| anyhow::anyhow!("vaulted card is not valid"))?)
    }

    /// Joins the session's merchant information with the shopper's: the
    /// binding information.
    fn binding_from_submission(
        &self,
        merchant: &Merchant,
        row: &SessionRow,
        now: i64,
    ) -> DomainResult<BindingRow> {
        let missing = || anyhow::anyhow!("session {} has no submission", row.id);
        Ok(BindingRow {
            id: binding_id_from_raw(&rand::random()),
            merchant_id: merchant.id.clone(),
            merchant_user_id: row.merchant_user_id.clone(),
            status: "ACTIVE".into(),
            card_fingerprint: row.card_fingerprint.clone().ok_or_else(missing)?,
            pan_ct: row.pan_ct.clone().ok_or_else(missing)?,
            pan_key_id: row.pan_key_id.clone().ok_or_else(missing)?,
            card_brand: row
                .card_brand
                .clone()
                .unwrap_or_else(|| CardBrand::Other.as_str().into()),
            card_last4: row.card_last4.clone().ok_or_else(missing)?,
            exp_month: row.exp_month.ok_or_else(missing)?,
            exp_year: row.exp_year.ok_or_else(missing)?,
            holder_name: row.shopper_name.clone().ok_or_else(missing)?,
            id_number_ct: row.id_number_ct.clone().ok_or_else(missing)?,
            id_key_id: row.id_key_id.clone().ok_or_else(missing)?,
            phone: row.phone.clone().ok_or_else(missing)?,
            currency: merchant.currency.code().to_owned(),
            per_payment_limit: merchant.per_payment_limit,
            daily_limit: merchant.daily_limit,
            usage_day: 0,
            usage_amount: 0,
            created_ms: now,
            revoked_ms: None,
            revoke_reason: None,
        })
    }

    async fn write(
        &self,
        row: SessionRow,
        new_binding: Option<BindingRow>,
    ) -> DomainResult<SessionRow> {
        self.store
            .apply_session_change(SessionChange {
                session: row,
                new_binding,
                new_payment: None,
                payment_final: None,
            })
            .await
            .map_err(concurrent)
    }

    async fn send_code(
        &self,
        merchant: &Merchant,
        row: &SessionRow,
        code: &str,
    ) -> DomainResult<()> {
        let phone = Phone::from_stored(row.phone.clone().unwrap_or_default());
        let what = match (
            row.amount_minor,
            row.currency
                .as_deref()
                .and_then(|c| Currency::parse(c).ok()),
        ) {
            (Some(amount), Some(currency)) if row.kind == KIND_BIND_AND_PAY => {
                format!("bind your card and pay {}", format_minor(amount, currency))
            }
            _ => "bind your card".to_owned(),
        };
        let text = format!(
            "[paybind] {code} is your code to {what} at {}. It expires in 5 minutes. Never share it.",
            merchant.display_name
        );
        self.sms.send(&phone, &text).await.map_err(|e| {
            tracing::error!(session_id = %row.id, error = %e, "could not send the code");
            DomainError::SmsUnavailable
        })
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
        .at(field));
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

fn shown_status(row: &SessionRow, now: i64) -> SessionStatus {
    match row.status.as_str() {
        COMPLETED => SessionStatus::Completed,
        FAILED => SessionStatus::Failed,
        _ if row.expires_ms <= now && row.status != CHARGING => SessionStatus::Expired,
        OPEN => SessionStatus::Open,
        _ => SessionStatus::AwaitingVerification,
    }
}

/// Refuses the call unless the session is usable and in `wanted` state.
fn require_status(row: &SessionRow, now: i64, wanted: &str) -> DomainResult<()> {
    match shown_status(row, now) {
        SessionStatus::Expired => Err(DomainError::SessionExpired),
        SessionStatus::Failed => Err(DomainError::SessionFailed),
        _ if row.status == wanted => Ok(()),
        SessionStatus::Completed => Err(DomainError::SessionState {
            status: "COMPLETED",
            hint: "it needs nothing more",
        }),
        SessionStatus::Open => Err(DomainError::SessionState {
            status: "OPEN",
            hint: "submit the shopper's information first",
        }),
        _ => Err(DomainError::SessionState {
            status: "AWAITING_VERIFICATION",
            hint: "verify the code, or ask for a new one",
        }),
    }
}
