//! Rows as stored, and the inputs and outcomes of the store's atomic steps.
//! Every integer is i64 (BIGINT on both backends); times are unix ms.

/// A registered merchant. `allowed_origins` and `return_urls` are JSON arrays.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MerchantRow {
    pub id: String,
    pub display_name: String,
    pub cert_identity: String,
    pub allowed_origins: String,
    pub return_urls: String,
    pub direct_entry: bool,
    pub currency: String,
    pub per_payment_limit: i64,
    pub daily_limit: i64,
    pub created_ms: i64,
}

/// A bind session, including what the shopper submitted while it waits for
/// the code (encrypted), which is cleared when it completes.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: String,
    pub merchant_id: String,
    pub merchant_user_id: String,
    pub kind: String,
    pub presentation: String,
    pub return_url: String,
    pub prefill_name: Option<String>,
    pub prefill_phone: Option<String>,
    pub status: String,
    pub version: i64,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub attempts_left: i64,
    pub idempotency_key: String,
    pub request_hash: String,
    pub order_id: Option<String>,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub description: Option<String>,
    pub shopper_name: Option<String>,
    pub id_number_ct: Option<Vec<u8>>,
    pub id_key_id: Option<String>,
    pub phone: Option<String>,
    pub pan_ct: Option<Vec<u8>>,
    pub pan_key_id: Option<String>,
    pub card_fingerprint: Option<String>,
    pub card_brand: Option<String>,
    pub card_last4: Option<String>,
    pub exp_month: Option<i64>,
    pub exp_year: Option<i64>,
    pub otp_hash: Option<String>,
    pub otp_expires_ms: Option<i64>,
    pub otp_tries_left: i64,
    pub otp_sent_ms: Option<i64>,
    pub otp_resends: i64,
    pub last_error: Option<String>,
    pub binding_id: Option<String>,
    pub payment_id: Option<String>,
}

impl SessionRow {
    /// Forgets what the shopper submitted (after completion or a decline).
    pub fn clear_submission(&mut self) {
        self.shopper_name = None;
        self.id_number_ct = None;
        self.id_key_id = None;
        self.phone = None;
        self.pan_ct = None;
        self.pan_key_id = None;
        self.card_fingerprint = None;
        self.card_brand = None;
        self.card_last4 = None;
        self.exp_month = None;
        self.exp_year = None;
        self.otp_hash = None;
        self.otp_expires_ms = None;
        self.otp_sent_ms = None;
    }
}

/// A binding with its vaulted card and the shopper's personal information.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BindingRow {
    pub id: String,
    pub merchant_id: String,
    pub merchant_user_id: String,
    pub status: String,
    pub card_fingerprint: String,
    pub pan_ct: Vec<u8>,
    pub pan_key_id: String,
    pub card_brand: String,
    pub card_last4: String,
    pub exp_month: i64,
    pub exp_year: i64,
    pub holder_name: String,
    pub id_number_ct: Vec<u8>,
    pub id_key_id: String,
    pub phone: String,
    pub currency: String,
    pub per_payment_limit: i64,
    pub daily_limit: i64,
    pub usage_day: i64,
    pub usage_amount: i64,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
    pub revoke_reason: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentRow {
    pub id: String,
    pub merchant_id: String,
    pub merchant_user_id: String,
    pub binding_id: Option<String>,
    pub session_id: Option<String>,
    pub order_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub description: String,
    pub status: String,
    pub decline_reason: Option<String>,
    pub acquirer_ref: Option<String>,
    pub counted_day: Option<i64>,
    pub refunded_minor: i64,
    pub shopper_authenticated: bool,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefundRow {
    pub id: String,
    pub merchant_id: String,
    pub payment_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub status: String,
    pub reason: String,
    pub idempotency_key: String,
    pub request_hash: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A row that was inserted, or the one that already held its unique key.
#[derive(Debug)]
pub enum Inserted<T> {
    New(T),
    Existing(T),
}

/// A session transition and what comes with it (see `Store::apply_session_change`).
#[derive(Debug)]
pub struct SessionChange {
    /// The new state; `version` is the version it was read at.
    pub session: SessionRow,
    /// A binding to create; if the user already has an active binding for the
    /// same card, that one is used instead. Its id is written to the session
    /// (and to `payment_final`'s payment).
    pub new_binding: Option<BindingRow>,
    pub new_payment: Option<PaymentRow>,
    pub payment_final: Option<PaymentOutcome>,
}

/// A payment's outcome from the acquirer.
#[derive(Debug, Clone)]
pub struct PaymentOutcome {
    pub payment_id: String,
    /// SUCCEEDED or DECLINED.
    pub status: String,
    pub decline_reason: Option<String>,
    pub acquirer_ref: Option<String>,
    pub now_ms: i64,
}

/// The input of the hot path.
#[derive(Debug, Clone)]
pub struct ReservePayment {
    pub payment_id: String,
    pub merchant_id: String,
    pub binding_id: String,
    pub merchant_user_id: String,
    pub order_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub description: String,
    pub idempotency_key: String,
    pub request_hash: String,
    /// Today's day number in the limits' time zone.
    pub day: i64,
    pub now_ms: i64,
}

/// The card to charge, as the binding holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VaultedCard {
    pub pan_ct: Vec<u8>,
    pub pan_key_id: String,
    pub exp_month: i64,
    pub exp_year: i64,
}

/// Returned once per call and matched at once, so the size of its
/// variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ReserveOutcome {
    /// Recorded as PENDING and counted against today's limit.
    Reserved(VaultedCard),
    /// The idempotency key was already used: the payment it made.
    Existing(PaymentRow),
    /// No such binding for this merchant and user.
    NotFound,
    Revoked,
    CurrencyMismatch,
    LimitExceeded {
        per_payment_limit: i64,
        remaining_today: i64,
    },
    /// This request could not be written (the rest of its batch was).
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct ReserveRefund {
    pub refund_id: String,
    pub merchant_id: String,
    pub payment_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub reason: String,
    pub idempotency_key: String,
    pub request_hash: String,
    pub now_ms: i64,
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum RefundReserveOutcome {
    /// Recorded as PENDING; the payment's `refunded_minor` already includes it.
    Reserved {
        refund: RefundRow,
        payment: PaymentRow,
    },
    Existing(RefundRow),
    PaymentNotFound,
    NotRefundable,
    CurrencyMismatch,
    Exceeds {
        refundable: i64,
    },
}

/// One page of a user's bindings, newest first; `after` is the last
/// (created_ms, id) of the previous page.
#[derive(Debug, Clone)]
pub struct BindingQuery {
    pub merchant_id: String,
    pub merchant_user_id: String,
    pub include_revoked: bool,
    pub after: Option<(i64, String)>,
    pub limit: i64,
}
