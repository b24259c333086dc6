//! Rows as stored, and the one translation between them and the domain's
//! types. Every table's columns are listed once (in its `row!`), every
//! stored enum is spelled once (in its `stored_enum!`), and a value the
//! domain cannot have — an unknown status, a state without its data — is a
//! `StoreError::Corrupt` that names the table, never a default.
//!
//! Every integer is i64 (BIGINT on both backends); times are unix ms.
use paybind_shared::{
    db::{StoreError, StoreResult},
    ids::{
        BindingId, EventId, IdempotencyKey, MerchantId, MerchantUserId, OrderId, PaymentId,
        RefundId, SessionId,
    },
    model::{BindingStatus, CardBrand, PaymentStatus, Presentation, RefundStatus, SessionStatus},
    money::{Currency, Money},
    person::{FullName, Phone},
    stored_enum, table_row,
    tls::CertFingerprint,
};

use crate::domain::{
    acquirer::{DeclineReason, VerificationRefusal},
    card::Expiry,
    deliveries::{AttemptOutcome, Delivery, DeliveryAttempt, DeliveryState, DeliveryStatus},
    events::{
        BindingSnapshot, Event, EventState, EventType, NewEvent, RevokedBy, RevokedSnapshot,
        SessionSnapshot,
    },
    model::{
        AttemptError, BindSession, Binding, BindingState, CardOnFile, ChargeableCard, Holder,
        Limits, Merchant, MerchantCertificate, MerchantStatus, Payment, PaymentState, Purchase,
        Refund, Revocation, SentCode, SessionKind, SessionState, Submitted, VaultedCard,
    },
    my_bindings::{LoginState, ShopperLogin},
    vault::Sealed,
    velocity::Counter,
};

// The spellings, each checked by a CHECK constraint in the migrations.
stored_enum!(pub payment_status: PaymentStatus, "payments.status", {
    Pending => "PENDING",
    Succeeded => "SUCCEEDED",
    Declined => "DECLINED",
});
stored_enum!(pub refund_status: RefundStatus, "refunds.status", {
    Pending => "PENDING",
    Succeeded => "SUCCEEDED",
    Failed => "FAILED",
});
stored_enum!(pub binding_status: BindingStatus, "bindings.status", {
    Active => "ACTIVE",
    Revoked => "REVOKED",
});
stored_enum!(pub revoked_by: RevokedBy, "bindings.revoked_by", {
    Merchant => "MERCHANT",
    Shopper => "SHOPPER",
    Expiry => "EXPIRY",
    Operator => "OPERATOR",
});
stored_enum!(pub event_type: EventType, "events.event_type", {
    BindingCreated => "BINDING_CREATED",
    BindingUpdated => "BINDING_UPDATED",
    BindingRevoked => "BINDING_REVOKED",
    PaymentSucceeded => "PAYMENT_SUCCEEDED",
    PaymentDeclined => "PAYMENT_DECLINED",
    RefundSucceeded => "REFUND_SUCCEEDED",
    BindSessionCompleted => "BIND_SESSION_COMPLETED",
    BindSessionFailed => "BIND_SESSION_FAILED",
    BindSessionExpired => "BIND_SESSION_EXPIRED",
});
stored_enum!(pub delivery_state: DeliveryState, "deliveries.status", {
    Pending => "PENDING",
    Delivered => "DELIVERED",
    Failed => "FAILED",
});
stored_enum!(pub attempt_outcome: AttemptOutcome, "delivery_attempts.outcome", {
    Acknowledged => "ACKNOWLEDGED",
    Refused => "REFUSED",
    Unreachable => "UNREACHABLE",
    TimedOut => "TIMED_OUT",
    NoEndpoint => "NO_ENDPOINT",
    Abandoned => "ABANDONED",
});
stored_enum!(session_status: SessionStatus, "events.state.status", {
    Open => "OPEN",
    AwaitingVerification => "AWAITING_VERIFICATION",
    Completed => "COMPLETED",
    Failed => "FAILED",
    Expired => "EXPIRED",
});
stored_enum!(pub card_brand: CardBrand, "card_brand", {
    Visa => "VISA",
    Mastercard => "MASTERCARD",
    UnionPay => "UNIONPAY",
    Amex => "AMEX",
    Jcb => "JCB",
    Discover => "DISCOVER",
    Other => "OTHER",
});
stored_enum!(pub decline_reason: DeclineReason, "payments.decline_reason", {
    InsufficientFunds => "INSUFFICIENT_FUNDS",
    DoNotHonor => "DO_NOT_HONOR",
    ExpiredCard => "EXPIRED_CARD",
    CvvMismatch => "CVV_MISMATCH",
    ProcessingError => "PROCESSING_ERROR",
});
/// `card_checks.outcome`: VERIFIED, or why the issuer refused (written,
/// never read back by the service: it is the institution's record).
pub fn card_check_outcome(outcome: Result<(), VerificationRefusal>) -> &'static str {
    match outcome {
        Ok(()) => "VERIFIED",
        Err(VerificationRefusal::Card(reason)) => decline_reason::to_stored(reason),
        Err(VerificationRefusal::HolderMismatch) => "HOLDER_MISMATCH",
        Err(VerificationRefusal::NoRecord) => "NO_CARDHOLDER_RECORD",
    }
}

stored_enum!(pub velocity_counter: Counter, "velocity_events.counter", {
    CardChecksPerMerchant => "CARD_CHECKS_PER_MERCHANT",
    CardChecksPerCard => "CARD_CHECKS_PER_CARD",
    CodesPerMerchant => "CODES_PER_MERCHANT",
    CodesPerPhone => "CODES_PER_PHONE",
    CodeTriesPerSession => "CODE_TRIES_PER_SESSION",
    CodeTriesPerPhone => "CODE_TRIES_PER_PHONE",
});

stored_enum!(pub session_kind: SessionKind, "bind_sessions.kind", {
    Bind => "BIND",
    BindAndPay => "BIND_AND_PAY",
});
stored_enum!(pub presentation: Presentation, "bind_sessions.presentation", {
    Redirect => "REDIRECT",
    Embedded => "EMBEDDED",
    Popup => "POPUP",
});
stored_enum!(pub attempt_error: AttemptError, "bind_sessions.last_error", {
    CardNotVerified => "CARD_NOT_VERIFIED",
    CardDeclined => "CARD_DECLINED",
    WrongCode => "WRONG_CODE",
});

/// The stored status of a session: its state's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionStateName {
    Open,
    AwaitingVerification,
    Charging,
    Completed,
    Failed,
}
stored_enum!(session_state: SessionStateName, "bind_sessions.status", {
    Open => "OPEN",
    AwaitingVerification => "AWAITING_VERIFICATION",
    Charging => "CHARGING",
    Completed => "COMPLETED",
    Failed => "FAILED",
});

fn corrupt(what: String) -> StoreError {
    StoreError::Corrupt(what)
}

fn money(amount: i64, currency: &str, what: impl Fn() -> String) -> StoreResult<Money> {
    Money::parse(amount, currency).map_err(|e| corrupt(format!("{}: {e}", what())))
}

fn expiry(month: i64, year: i64, what: impl Fn() -> String) -> StoreResult<Expiry> {
    match (u8::try_from(month), u16::try_from(year)) {
        (Ok(month), Ok(year)) if (1..=12).contains(&month) => Ok(Expiry { month, year }),
        _ => Err(corrupt(format!("{}: expiry {month}/{year}", what()))),
    }
}

fn count(value: i64, what: impl Fn() -> String) -> StoreResult<u32> {
    u32::try_from(value).map_err(|_| corrupt(format!("{}: {value} is not a count", what())))
}

// ------------------------------------------------------------- merchants

table_row!(
    /// A registered merchant. `allowed_origins` and `return_urls` are JSON arrays.
    MerchantRow {
        id: String,
        display_name: String,
        cert_identity: String,
        allowed_origins: String,
        return_urls: String,
        direct_entry: bool,
        currency: String,
        per_payment_limit: i64,
        daily_limit: i64,
        created_ms: i64,
        bind_and_pay_limit: i64,
        disabled_ms: Option<i64>,
    }
);

impl MerchantRow {
    pub fn from_merchant(m: &Merchant, now_ms: i64) -> StoreResult<Self> {
        let json = |v: &Vec<String>| {
            serde_json::to_string(v).map_err(|e| corrupt(format!("merchant {}: {e}", m.id)))
        };
        Ok(Self {
            id: m.id.as_str().to_owned(),
            display_name: m.display_name.clone(),
            cert_identity: m.cert_identity.clone(),
            allowed_origins: json(&m.allowed_origins)?,
            return_urls: json(&m.return_urls)?,
            direct_entry: m.direct_entry,
            currency: m.currency.code().to_owned(),
            per_payment_limit: m.limits.per_payment.amount_minor(),
            daily_limit: m.limits.daily.amount_minor(),
            created_ms: now_ms,
            bind_and_pay_limit: m.bind_and_pay_limit.amount_minor(),
            disabled_ms: match m.status {
                MerchantStatus::Enabled => None,
                MerchantStatus::Disabled { since_ms } => Some(since_ms),
            },
        })
    }

    pub fn into_merchant(self) -> StoreResult<Merchant> {
        let what = |column: &str| corrupt(format!("merchants.{column} of {}", self.id));
        let limit = |amount: i64, column: &str| {
            money(amount, &self.currency, || {
                format!("merchants.{column} of {}", self.id)
            })
        };
        Ok(Merchant {
            allowed_origins: serde_json::from_str(&self.allowed_origins)
                .map_err(|_| what("allowed_origins"))?,
            return_urls: serde_json::from_str(&self.return_urls)
                .map_err(|_| what("return_urls"))?,
            currency: Currency::parse(&self.currency).map_err(|_| what("currency"))?,
            limits: Limits {
                per_payment: limit(self.per_payment_limit, "per_payment_limit")?,
                daily: limit(self.daily_limit, "daily_limit")?,
            },
            bind_and_pay_limit: limit(self.bind_and_pay_limit, "bind_and_pay_limit")?,
            display_name: self.display_name,
            cert_identity: self.cert_identity,
            status: match self.disabled_ms {
                None => MerchantStatus::Enabled,
                Some(since_ms) => MerchantStatus::Disabled { since_ms },
            },
            direct_entry: self.direct_entry,
            id: MerchantId::from_stored(self.id),
        })
    }
}

table_row!(
    /// A certificate registered for a merchant (fingerprint in lowercase hex).
    MerchantCertificateRow {
        fingerprint: String,
        merchant_id: String,
        not_after_ms: i64,
        added_ms: i64,
        revoked_ms: Option<i64>,
    }
);

impl MerchantCertificateRow {
    pub fn from_certificate(c: &MerchantCertificate) -> Self {
        Self {
            fingerprint: c.fingerprint.to_hex(),
            merchant_id: c.merchant_id.as_str().to_owned(),
            not_after_ms: c.not_after_ms,
            added_ms: c.added_ms,
            revoked_ms: c.revoked_ms,
        }
    }

    pub fn into_certificate(self) -> StoreResult<MerchantCertificate> {
        Ok(MerchantCertificate {
            fingerprint: CertFingerprint::parse(&self.fingerprint).map_err(|_| {
                corrupt(format!(
                    "merchant_certificates.fingerprint of {}",
                    self.merchant_id
                ))
            })?,
            merchant_id: MerchantId::from_stored(self.merchant_id),
            not_after_ms: self.not_after_ms,
            added_ms: self.added_ms,
            revoked_ms: self.revoked_ms,
        })
    }
}

// -------------------------------------------------------------- sessions

table_row!(
    /// A bind session: one row whose submission, code and outcome columns
    /// are set as its state has them (see `into_session`).
    SessionRow {
        id: String,
        merchant_id: String,
        merchant_user_id: String,
        kind: String,
        presentation: String,
        return_url: String,
        prefill_name: Option<String>,
        prefill_phone: Option<String>,
        status: String,
        version: i64,
        created_ms: i64,
        expires_ms: i64,
        attempts_left: i64,
        idempotency_key: String,
        request_hash: String,
        order_id: Option<String>,
        amount_minor: Option<i64>,
        currency: Option<String>,
        description: Option<String>,
        shopper_name: Option<String>,
        id_number_ct: Option<Vec<u8>>,
        id_key_id: Option<String>,
        phone: Option<String>,
        pan_ct: Option<Vec<u8>>,
        pan_key_id: Option<String>,
        card_fingerprint: Option<String>,
        card_brand: Option<String>,
        card_last4: Option<String>,
        exp_month: Option<i64>,
        exp_year: Option<i64>,
        otp_hash: Option<String>,
        otp_expires_ms: Option<i64>,
        otp_tries_left: i64,
        otp_sent_ms: Option<i64>,
        otp_resends: i64,
        last_error: Option<String>,
        binding_id: Option<String>,
        payment_id: Option<String>,
    }
);

impl SessionRow {
    pub fn from_session(s: &BindSession) -> Self {
        let (status, submitted, code, binding_id, payment_id) = match &s.state {
            SessionState::Open => (SessionStateName::Open, None, None, None, None),
            SessionState::AwaitingVerification { submitted, code } => (
                SessionStateName::AwaitingVerification,
                Some(submitted),
                Some(code),
                None,
                None,
            ),
            SessionState::Charging {
                submitted,
                payment_id,
            } => (
                SessionStateName::Charging,
                Some(submitted),
                None,
                None,
                Some(payment_id),
            ),
            SessionState::Completed {
                binding_id,
                payment_id,
            } => (
                SessionStateName::Completed,
                None,
                None,
                Some(binding_id),
                payment_id.as_ref(),
            ),
            SessionState::Failed => (SessionStateName::Failed, None, None, None, None),
        };
        let purchase = s.purchase.as_ref();
        let card = submitted.map(|x| &x.card);
        let holder = submitted.map(|x| &x.holder);
        Self {
            id: s.id.as_str().to_owned(),
            merchant_id: s.merchant_id.as_str().to_owned(),
            merchant_user_id: s.merchant_user_id.as_str().to_owned(),
            kind: session_kind::to_stored(s.kind()).to_owned(),
            presentation: presentation::to_stored(s.presentation).to_owned(),
            return_url: s.return_url.clone(),
            prefill_name: s.prefill_name.as_ref().map(|n| n.as_str().to_owned()),
            prefill_phone: s.prefill_phone.as_ref().map(|p| p.e164().to_owned()),
            status: session_state::to_stored(status).to_owned(),
            version: s.version,
            created_ms: s.created_ms,
            expires_ms: s.expires_ms,
            attempts_left: i64::from(s.attempts_left),
            idempotency_key: s.idempotency_key.as_str().to_owned(),
            request_hash: s.request_hash.clone(),
            order_id: purchase.map(|p| p.order_id.as_str().to_owned()),
            amount_minor: purchase.map(|p| p.amount.amount_minor()),
            currency: purchase.map(|p| p.amount.currency().code().to_owned()),
            description: purchase.map(|p| p.description.clone()),
            shopper_name: holder.map(|h| h.name.as_str().to_owned()),
            id_number_ct: holder.map(|h| h.id_number.blob.clone()),
            id_key_id: holder.map(|h| h.id_number.key_id.clone()),
            phone: holder.map(|h| h.phone.e164().to_owned()),
            pan_ct: card.map(|c| c.pan.blob.clone()),
            pan_key_id: card.map(|c| c.pan.key_id.clone()),
            card_fingerprint: card.map(|c| c.fingerprint.clone()),
            card_brand: card.map(|c| card_brand::to_stored(c.brand).to_owned()),
            card_last4: card.map(|c| c.last4.clone()),
            exp_month: card.map(|c| i64::from(c.expiry.month)),
            exp_year: card.map(|c| i64::from(c.expiry.year)),
            otp_hash: code.map(|c| c.hash.clone()),
            otp_expires_ms: code.map(|c| c.expires_ms),
            otp_tries_left: code.map_or(0, |c| i64::from(c.tries_left)),
            otp_sent_ms: code.map(|c| c.sent_ms),
            otp_resends: code.map_or(0, |c| i64::from(c.resends)),
            last_error: s.last_error.map(|e| attempt_error::to_stored(e).to_owned()),
            binding_id: binding_id.map(|b| b.as_str().to_owned()),
            payment_id: payment_id.map(|p| p.as_str().to_owned()),
        }
    }

    pub fn into_session(self) -> StoreResult<BindSession> {
        let id = self.id.clone();
        let missing = |column: &str| {
            corrupt(format!(
                "bind_sessions.{column} is missing for session {id}"
            ))
        };
        let kind = session_kind::from_stored(&self.kind)?;
        let purchase = match kind {
            SessionKind::Bind => None,
            SessionKind::BindAndPay => Some(Purchase {
                order_id: OrderId::from_stored(self.order_id.ok_or_else(|| missing("order_id"))?),
                amount: money(
                    self.amount_minor.ok_or_else(|| missing("amount_minor"))?,
                    self.currency
                        .as_deref()
                        .ok_or_else(|| missing("currency"))?,
                    || format!("bind_sessions.amount_minor of {id}"),
                )?,
                description: self.description.unwrap_or_default(),
            }),
        };
        let submitted = || -> StoreResult<Submitted> {
            Ok(Submitted {
                card: VaultedCard {
                    fingerprint: self
                        .card_fingerprint
                        .clone()
                        .ok_or_else(|| missing("card_fingerprint"))?,
                    pan: Sealed {
                        key_id: self
                            .pan_key_id
                            .clone()
                            .ok_or_else(|| missing("pan_key_id"))?,
                        blob: self.pan_ct.clone().ok_or_else(|| missing("pan_ct"))?,
                    },
                    brand: card_brand::from_stored(
                        self.card_brand
                            .as_deref()
                            .ok_or_else(|| missing("card_brand"))?,
                    )?,
                    last4: self
                        .card_last4
                        .clone()
                        .ok_or_else(|| missing("card_last4"))?,
                    expiry: expiry(
                        self.exp_month.ok_or_else(|| missing("exp_month"))?,
                        self.exp_year.ok_or_else(|| missing("exp_year"))?,
                        || format!("bind_sessions of {id}"),
                    )?,
                },
                holder: Holder {
                    name: FullName::from_stored(
                        self.shopper_name
                            .clone()
                            .ok_or_else(|| missing("shopper_name"))?,
                    ),
                    id_number: Sealed {
                        key_id: self.id_key_id.clone().ok_or_else(|| missing("id_key_id"))?,
                        blob: self
                            .id_number_ct
                            .clone()
                            .ok_or_else(|| missing("id_number_ct"))?,
                    },
                    phone: Phone::from_stored(self.phone.clone().ok_or_else(|| missing("phone"))?),
                },
            })
        };
        let payment_id = self.payment_id.clone().map(PaymentId::from_stored);
        let state = match session_state::from_stored(&self.status)? {
            SessionStateName::Open => SessionState::Open,
            SessionStateName::AwaitingVerification => SessionState::AwaitingVerification {
                submitted: submitted()?,
                code: SentCode {
                    hash: self.otp_hash.clone().ok_or_else(|| missing("otp_hash"))?,
                    expires_ms: self
                        .otp_expires_ms
                        .ok_or_else(|| missing("otp_expires_ms"))?,
                    tries_left: count(self.otp_tries_left, || {
                        format!("bind_sessions.otp_tries_left of {id}")
                    })?,
                    sent_ms: self.otp_sent_ms.ok_or_else(|| missing("otp_sent_ms"))?,
                    resends: count(self.otp_resends, || {
                        format!("bind_sessions.otp_resends of {id}")
                    })?,
                },
            },
            SessionStateName::Charging => SessionState::Charging {
                submitted: submitted()?,
                payment_id: payment_id.ok_or_else(|| missing("payment_id"))?,
            },
            SessionStateName::Completed => SessionState::Completed {
                binding_id: BindingId::from_stored(
                    self.binding_id
                        .clone()
                        .ok_or_else(|| missing("binding_id"))?,
                ),
                payment_id,
            },
            SessionStateName::Failed => SessionState::Failed,
        };
        Ok(BindSession {
            merchant_id: MerchantId::from_stored(self.merchant_id),
            merchant_user_id: MerchantUserId::from_stored(self.merchant_user_id),
            presentation: presentation::from_stored(&self.presentation)?,
            return_url: self.return_url,
            prefill_name: self.prefill_name.map(FullName::from_stored),
            prefill_phone: self.prefill_phone.map(Phone::from_stored),
            purchase,
            idempotency_key: IdempotencyKey::from_stored(self.idempotency_key),
            request_hash: self.request_hash,
            created_ms: self.created_ms,
            expires_ms: self.expires_ms,
            attempts_left: count(self.attempts_left.max(0), || {
                format!("bind_sessions.attempts_left of {}", self.id)
            })?,
            last_error: self
                .last_error
                .as_deref()
                .map(attempt_error::from_stored)
                .transpose()?,
            state,
            version: self.version,
            id: SessionId::from_stored(self.id),
        })
    }
}

// -------------------------------------------------------------- bindings

table_row!(
    /// A binding with its vaulted card and the shopper's personal information.
    BindingRow {
        id: String,
        merchant_id: String,
        merchant_user_id: String,
        status: String,
        card_fingerprint: String,
        pan_ct: Option<Vec<u8>>,
        pan_key_id: Option<String>,
        card_brand: String,
        card_last4: String,
        exp_month: i64,
        exp_year: i64,
        holder_name: Option<String>,
        id_number_ct: Option<Vec<u8>>,
        id_key_id: Option<String>,
        phone: Option<String>,
        currency: String,
        per_payment_limit: i64,
        daily_limit: i64,
        usage_day: i64,
        usage_amount: i64,
        created_ms: i64,
        revoked_ms: Option<i64>,
        revoke_reason: Option<String>,
        revoked_by: Option<String>,
    }
);

impl BindingRow {
    pub fn from_binding(b: &Binding) -> Self {
        let (pan, holder, revocation) = match &b.state {
            BindingState::Active { pan, holder } => (Some(pan), Some(holder), None),
            BindingState::Revoked(revocation) => (None, None, Some(revocation)),
        };
        Self {
            id: b.id.as_str().to_owned(),
            merchant_id: b.merchant_id.as_str().to_owned(),
            merchant_user_id: b.merchant_user_id.as_str().to_owned(),
            status: binding_status::to_stored(b.status()).to_owned(),
            card_fingerprint: b.card.fingerprint.clone(),
            pan_ct: pan.map(|p| p.blob.clone()),
            pan_key_id: pan.map(|p| p.key_id.clone()),
            card_brand: card_brand::to_stored(b.card.brand).to_owned(),
            card_last4: b.card.last4.clone(),
            exp_month: i64::from(b.card.expiry.month),
            exp_year: i64::from(b.card.expiry.year),
            holder_name: holder.map(|h| h.name.as_str().to_owned()),
            id_number_ct: holder.map(|h| h.id_number.blob.clone()),
            id_key_id: holder.map(|h| h.id_number.key_id.clone()),
            phone: holder.map(|h| h.phone.e164().to_owned()),
            currency: b.limits.currency().code().to_owned(),
            per_payment_limit: b.limits.per_payment.amount_minor(),
            daily_limit: b.limits.daily.amount_minor(),
            usage_day: b.usage_day,
            usage_amount: b.used_on_usage_day,
            created_ms: b.created_ms,
            revoked_ms: revocation.map(|r| r.at_ms),
            revoke_reason: revocation.map(|r| r.reason.clone()),
            revoked_by: revocation.map(|r| revoked_by::to_stored(r.by).to_owned()),
        }
    }

    pub fn into_binding(self) -> StoreResult<Binding> {
        let id = self.id.clone();
        let what = |column: &str| format!("bindings.{column} of {id}");
        let missing = |column: &str| corrupt(format!("{} is missing", what(column)));
        let state = match binding_status::from_stored(&self.status)? {
            BindingStatus::Active => BindingState::Active {
                pan: Sealed {
                    key_id: self.pan_key_id.ok_or_else(|| missing("pan_key_id"))?,
                    blob: self.pan_ct.ok_or_else(|| missing("pan_ct"))?,
                },
                holder: Holder {
                    name: FullName::from_stored(
                        self.holder_name.ok_or_else(|| missing("holder_name"))?,
                    ),
                    id_number: Sealed {
                        key_id: self.id_key_id.ok_or_else(|| missing("id_key_id"))?,
                        blob: self.id_number_ct.ok_or_else(|| missing("id_number_ct"))?,
                    },
                    phone: Phone::from_stored(self.phone.ok_or_else(|| missing("phone"))?),
                },
            },
            BindingStatus::Revoked => BindingState::Revoked(Revocation {
                at_ms: self.revoked_ms.ok_or_else(|| missing("revoked_ms"))?,
                by: revoked_by::from_stored(
                    self.revoked_by
                        .as_deref()
                        .ok_or_else(|| missing("revoked_by"))?,
                )?,
                reason: self.revoke_reason.unwrap_or_default(),
            }),
        };
        Ok(Binding {
            card: CardOnFile {
                fingerprint: self.card_fingerprint,
                brand: card_brand::from_stored(&self.card_brand)?,
                last4: self.card_last4,
                expiry: expiry(self.exp_month, self.exp_year, || what("exp_month"))?,
            },
            state,
            limits: Limits {
                per_payment: money(self.per_payment_limit, &self.currency, || {
                    what("per_payment_limit")
                })?,
                daily: money(self.daily_limit, &self.currency, || what("daily_limit"))?,
            },
            usage_day: self.usage_day,
            used_on_usage_day: self.usage_amount,
            created_ms: self.created_ms,
            merchant_id: MerchantId::from_stored(self.merchant_id),
            merchant_user_id: MerchantUserId::from_stored(self.merchant_user_id),
            id: BindingId::from_stored(self.id),
        })
    }
}

// -------------------------------------------------------------- payments

table_row!(
    /// Also an event's state, as JSON: PostgreSQL's `row_to_json` of the
    /// row and serde agree on the column names.
    #[derive(serde::Serialize, serde::Deserialize)]
    PaymentRow {
        id: String,
        merchant_id: String,
        merchant_user_id: String,
        binding_id: Option<String>,
        session_id: Option<String>,
        order_id: String,
        amount_minor: i64,
        currency: String,
        description: String,
        status: String,
        decline_reason: Option<String>,
        acquirer_ref: Option<String>,
        counted_day: Option<i64>,
        refunded_minor: i64,
        shopper_authenticated: bool,
        idempotency_key: Option<String>,
        request_hash: Option<String>,
        created_ms: i64,
        updated_ms: i64,
    }
);

/// A payment state's columns: status, decline reason, acquirer reference.
pub fn state_columns(state: &PaymentState) -> (&'static str, Option<&'static str>, Option<String>) {
    match state {
        PaymentState::Pending => (
            payment_status::to_stored(PaymentStatus::Pending),
            None,
            None,
        ),
        PaymentState::Succeeded { acquirer_ref } => (
            payment_status::to_stored(PaymentStatus::Succeeded),
            None,
            Some(acquirer_ref.clone()),
        ),
        PaymentState::Declined { reason } => (
            payment_status::to_stored(PaymentStatus::Declined),
            Some(decline_reason::to_stored(*reason)),
            None,
        ),
    }
}

impl PaymentRow {
    pub fn from_payment(p: &Payment) -> Self {
        let (status, decline_reason, acquirer_ref) = state_columns(&p.state);
        Self {
            id: p.id.as_str().to_owned(),
            merchant_id: p.merchant_id.as_str().to_owned(),
            merchant_user_id: p.merchant_user_id.as_str().to_owned(),
            binding_id: p.binding_id.as_ref().map(|b| b.as_str().to_owned()),
            session_id: p.session_id.as_ref().map(|s| s.as_str().to_owned()),
            order_id: p.order_id.as_str().to_owned(),
            amount_minor: p.amount.amount_minor(),
            currency: p.amount.currency().code().to_owned(),
            description: p.description.clone(),
            status: status.to_owned(),
            decline_reason: decline_reason.map(str::to_owned),
            acquirer_ref,
            counted_day: p.counted_day,
            refunded_minor: p.refunded_minor,
            shopper_authenticated: p.shopper_authenticated,
            idempotency_key: p.idempotency_key.as_ref().map(|k| k.as_str().to_owned()),
            request_hash: p.request_hash.clone(),
            created_ms: p.created_ms,
            updated_ms: p.updated_ms,
        }
    }

    pub fn into_payment(self) -> StoreResult<Payment> {
        let id = self.id.clone();
        let missing = |column: &str| corrupt(format!("payments.{column} is missing for {id}"));
        let state = match payment_status::from_stored(&self.status)? {
            PaymentStatus::Pending => PaymentState::Pending,
            PaymentStatus::Succeeded => PaymentState::Succeeded {
                acquirer_ref: self
                    .acquirer_ref
                    .clone()
                    .ok_or_else(|| missing("acquirer_ref"))?,
            },
            PaymentStatus::Declined => PaymentState::Declined {
                reason: decline_reason::from_stored(
                    self.decline_reason
                        .as_deref()
                        .ok_or_else(|| missing("decline_reason"))?,
                )?,
            },
        };
        Ok(Payment {
            amount: money(self.amount_minor, &self.currency, || {
                format!("payments.amount_minor of {id}")
            })?,
            state,
            merchant_id: MerchantId::from_stored(self.merchant_id),
            merchant_user_id: MerchantUserId::from_stored(self.merchant_user_id),
            binding_id: self.binding_id.map(BindingId::from_stored),
            session_id: self.session_id.map(SessionId::from_stored),
            order_id: OrderId::from_stored(self.order_id),
            description: self.description,
            counted_day: self.counted_day,
            refunded_minor: self.refunded_minor,
            shopper_authenticated: self.shopper_authenticated,
            idempotency_key: self.idempotency_key.map(IdempotencyKey::from_stored),
            request_hash: self.request_hash,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            id: PaymentId::from_stored(self.id),
        })
    }
}

// --------------------------------------------------------------- refunds

table_row!(
    /// Also an event's state, as JSON.
    #[derive(serde::Serialize, serde::Deserialize)]
    RefundRow {
    id: String,
    merchant_id: String,
    payment_id: String,
    amount_minor: i64,
    currency: String,
    status: String,
    reason: String,
    idempotency_key: String,
    request_hash: String,
    created_ms: i64,
    updated_ms: i64,
});

impl RefundRow {
    pub fn from_refund(r: &Refund) -> Self {
        Self {
            id: r.id.as_str().to_owned(),
            merchant_id: r.merchant_id.as_str().to_owned(),
            payment_id: r.payment_id.as_str().to_owned(),
            amount_minor: r.amount.amount_minor(),
            currency: r.amount.currency().code().to_owned(),
            status: refund_status::to_stored(r.status).to_owned(),
            reason: r.reason.clone(),
            idempotency_key: r.idempotency_key.as_str().to_owned(),
            request_hash: r.request_hash.clone(),
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
        }
    }

    pub fn into_refund(self) -> StoreResult<Refund> {
        Ok(Refund {
            amount: money(self.amount_minor, &self.currency, || {
                format!("refunds.amount_minor of {}", self.id)
            })?,
            status: refund_status::from_stored(&self.status)?,
            merchant_id: MerchantId::from_stored(self.merchant_id),
            payment_id: PaymentId::from_stored(self.payment_id),
            reason: self.reason,
            idempotency_key: IdempotencyKey::from_stored(self.idempotency_key),
            request_hash: self.request_hash,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            id: RefundId::from_stored(self.id),
        })
    }
}

/// The card a reservation hands back, as stored.
pub fn chargeable_card(
    pan_ct: Vec<u8>,
    pan_key_id: String,
    exp_month: i64,
    exp_year: i64,
    owner: String,
) -> StoreResult<ChargeableCard> {
    Ok(ChargeableCard {
        pan: Sealed {
            key_id: pan_key_id,
            blob: pan_ct,
        },
        expiry: expiry(exp_month, exp_year, || "bindings.exp_month".to_owned())?,
        owner,
    })
}

// ---------------------------------------------------------------- events

table_row!(EventRow {
    write_no: i64,
    seq: Option<i64>,
    event_id: String,
    merchant_id: String,
    event_type: String,
    resource_id: String,
    occurred_ms: i64,
    state: String,
});

/// A binding event's state, as JSON: the card summary and limits, never
/// the sealed number or the holder.
#[derive(serde::Serialize, serde::Deserialize)]
struct BindingStateJson {
    id: String,
    merchant_user_id: String,
    status: String,
    card_fingerprint: String,
    card_brand: String,
    card_last4: String,
    exp_month: i64,
    exp_year: i64,
    currency: String,
    per_payment_limit: i64,
    daily_limit: i64,
    created_ms: i64,
    revoked_ms: Option<i64>,
    revoked_by: Option<String>,
    revoke_reason: Option<String>,
}

/// A session event's state, as JSON.
#[derive(serde::Serialize, serde::Deserialize)]
struct SessionStateJson {
    id: String,
    merchant_user_id: String,
    status: String,
    order_id: Option<String>,
    binding_id: Option<String>,
    payment_id: Option<String>,
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Plain structs of strings and integers: serialising cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

/// An event's columns but `write_no` and `seq` (given by the database).
pub struct NewEventRow {
    pub event_id: String,
    pub merchant_id: String,
    pub event_type: &'static str,
    pub resource_id: String,
    pub occurred_ms: i64,
    pub state: String,
}

impl NewEventRow {
    pub fn from_event(e: &NewEvent) -> Self {
        Self {
            event_id: e.id.as_str().to_owned(),
            merchant_id: e.merchant_id.as_str().to_owned(),
            event_type: event_type::to_stored(e.event_type),
            resource_id: e.state.resource_id().to_owned(),
            occurred_ms: e.occurred_ms,
            state: state_json(&e.state),
        }
    }
}

fn state_json(state: &EventState) -> String {
    match state {
        EventState::Payment(p) => to_json(&PaymentRow::from_payment(p)),
        EventState::Refund(r) => to_json(&RefundRow::from_refund(r)),
        EventState::Binding(b) => to_json(&BindingStateJson {
            id: b.id.as_str().to_owned(),
            merchant_user_id: b.merchant_user_id.as_str().to_owned(),
            status: binding_status::to_stored(b.status).to_owned(),
            card_fingerprint: b.card.fingerprint.clone(),
            card_brand: card_brand::to_stored(b.card.brand).to_owned(),
            card_last4: b.card.last4.clone(),
            exp_month: i64::from(b.card.expiry.month),
            exp_year: i64::from(b.card.expiry.year),
            currency: b.limits.currency().code().to_owned(),
            per_payment_limit: b.limits.per_payment.amount_minor(),
            daily_limit: b.limits.daily.amount_minor(),
            created_ms: b.created_ms,
            revoked_ms: b.revoked.as_ref().map(|r| r.at_ms),
            revoked_by: b
                .revoked
                .as_ref()
                .map(|r| revoked_by::to_stored(r.by).to_owned()),
            revoke_reason: b.revoked.as_ref().map(|r| r.reason.clone()),
        }),
        EventState::Session(s) => to_json(&SessionStateJson {
            id: s.id.as_str().to_owned(),
            merchant_user_id: s.merchant_user_id.as_str().to_owned(),
            status: session_status::to_stored(s.status).to_owned(),
            order_id: s.order_id.as_ref().map(|o| o.as_str().to_owned()),
            binding_id: s.binding_id.as_ref().map(|b| b.as_str().to_owned()),
            payment_id: s.payment_id.as_ref().map(|p| p.as_str().to_owned()),
        }),
    }
}

impl EventRow {
    pub fn into_event(self) -> StoreResult<Event> {
        let what = || format!("events.state of {}", self.event_id);
        let bad = |e: serde_json::Error| corrupt(format!("{}: {e}", what()));
        let kind = event_type::from_stored(&self.event_type)?;
        let state = match kind {
            EventType::BindingCreated | EventType::BindingUpdated | EventType::BindingRevoked => {
                let j: BindingStateJson = serde_json::from_str(&self.state).map_err(bad)?;
                let revoked = match (j.revoked_ms, j.revoked_by) {
                    (Some(at_ms), Some(by)) => Some(RevokedSnapshot {
                        at_ms,
                        by: revoked_by::from_stored(&by)?,
                        reason: j.revoke_reason.unwrap_or_default(),
                    }),
                    _ => None,
                };
                EventState::Binding(BindingSnapshot {
                    card: CardOnFile {
                        fingerprint: j.card_fingerprint,
                        brand: card_brand::from_stored(&j.card_brand)?,
                        last4: j.card_last4,
                        expiry: expiry(j.exp_month, j.exp_year, what)?,
                    },
                    limits: Limits {
                        per_payment: money(j.per_payment_limit, &j.currency, what)?,
                        daily: money(j.daily_limit, &j.currency, what)?,
                    },
                    status: binding_status::from_stored(&j.status)?,
                    id: BindingId::from_stored(j.id),
                    merchant_user_id: MerchantUserId::from_stored(j.merchant_user_id),
                    created_ms: j.created_ms,
                    revoked,
                })
            }
            EventType::PaymentSucceeded | EventType::PaymentDeclined => {
                let row: PaymentRow = serde_json::from_str(&self.state).map_err(bad)?;
                EventState::Payment(row.into_payment()?)
            }
            EventType::RefundSucceeded => {
                let row: RefundRow = serde_json::from_str(&self.state).map_err(bad)?;
                EventState::Refund(row.into_refund()?)
            }
            EventType::BindSessionCompleted
            | EventType::BindSessionFailed
            | EventType::BindSessionExpired => {
                let j: SessionStateJson = serde_json::from_str(&self.state).map_err(bad)?;
                EventState::Session(SessionSnapshot {
                    id: SessionId::from_stored(j.id),
                    merchant_user_id: MerchantUserId::from_stored(j.merchant_user_id),
                    status: session_status::from_stored(&j.status)?,
                    order_id: j.order_id.map(OrderId::from_stored),
                    binding_id: j.binding_id.map(BindingId::from_stored),
                    payment_id: j.payment_id.map(PaymentId::from_stored),
                })
            }
        };
        Ok(Event {
            seq: self
                .seq
                .ok_or_else(|| corrupt(format!("events.seq of {} is missing", self.event_id)))?,
            id: EventId::from_stored(self.event_id),
            event_type: kind,
            version: self.write_no,
            occurred_ms: self.occurred_ms,
            state,
        })
    }
}

// -------------------------------------------------------- shopper logins

table_row!(ShopperLoginRow {
    id_hash: String,
    phone: String,
    status: String,
    code_hash: Option<String>,
    code_expires_ms: Option<i64>,
    tries_left: i64,
    created_ms: i64,
    expires_ms: i64,
});

impl ShopperLoginRow {
    pub fn from_login(l: &ShopperLogin) -> Self {
        let (status, code_hash, code_expires_ms, tries_left) = match &l.state {
            LoginState::AwaitingCode {
                code_hash,
                code_expires_ms,
                tries_left,
            } => (
                "AWAITING_CODE",
                Some(code_hash.clone()),
                Some(*code_expires_ms),
                i64::from(*tries_left),
            ),
            LoginState::SignedIn => ("SIGNED_IN", None, None, 0),
        };
        Self {
            id_hash: l.id_hash.clone(),
            phone: l.phone.e164().to_owned(),
            status: status.to_owned(),
            code_hash,
            code_expires_ms,
            tries_left,
            created_ms: l.created_ms,
            expires_ms: l.expires_ms,
        }
    }

    pub fn into_login(self) -> StoreResult<ShopperLogin> {
        let state = match (self.status.as_str(), self.code_hash, self.code_expires_ms) {
            ("AWAITING_CODE", Some(code_hash), Some(code_expires_ms)) => LoginState::AwaitingCode {
                code_hash,
                code_expires_ms,
                tries_left: u32::try_from(self.tries_left).unwrap_or(0),
            },
            ("SIGNED_IN", _, _) => LoginState::SignedIn,
            (other, _, _) => {
                return Err(corrupt(format!(
                    "shopper_logins.status {other} without its code"
                )))
            }
        };
        Ok(ShopperLogin {
            id_hash: self.id_hash,
            phone: Phone::from_stored(self.phone),
            state,
            created_ms: self.created_ms,
            expires_ms: self.expires_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_status_is_refused_by_name() {
        let err = payment_status::from_stored("SETTLED").expect_err("unknown");
        assert!(err.to_string().contains("payments.status"), "{err}");
        assert!(err.to_string().contains("SETTLED"), "{err}");
    }
}

// ------------------------------------------------------------ deliveries

table_row!(DeliveryRow {
    seq: i64,
    event_id: String,
    status: String,
    next_attempt_ms: i64,
    finished_ms: Option<i64>,
});

table_row!(DeliveryAttemptRow {
    seq: i64,
    attempt: i64,
    started_ms: i64,
    latency_ms: i64,
    outcome: String,
    detail: String,
});

impl DeliveryAttemptRow {
    pub fn into_attempt(self) -> StoreResult<DeliveryAttempt> {
        Ok(DeliveryAttempt {
            attempt: u32::try_from(self.attempt)
                .map_err(|_| corrupt(format!("delivery_attempts.attempt {}", self.attempt)))?,
            started_ms: self.started_ms,
            latency_ms: self.latency_ms,
            outcome: attempt_outcome::from_stored(&self.outcome)?,
            detail: self.detail,
        })
    }
}

impl DeliveryRow {
    /// With its attempts (any order; sorted here).
    pub fn into_delivery(self, attempts: Vec<DeliveryAttemptRow>) -> StoreResult<Delivery> {
        let finished = || {
            self.finished_ms
                .ok_or_else(|| corrupt(format!("deliveries.finished_ms of {}", self.seq)))
        };
        let status = match delivery_state::from_stored(&self.status)? {
            DeliveryState::Pending => DeliveryStatus::Pending {
                next_attempt_ms: self.next_attempt_ms,
            },
            DeliveryState::Delivered => DeliveryStatus::Delivered { at_ms: finished()? },
            DeliveryState::Failed => DeliveryStatus::Failed { at_ms: finished()? },
        };
        let mut attempts = attempts
            .into_iter()
            .map(DeliveryAttemptRow::into_attempt)
            .collect::<StoreResult<Vec<_>>>()?;
        attempts.sort_by_key(|a| a.attempt);
        Ok(Delivery {
            event_id: self.event_id,
            seq: self.seq,
            status,
            attempts,
        })
    }
}
