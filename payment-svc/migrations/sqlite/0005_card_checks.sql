-- Binding only the cardholder: the issuer verifies the card and its holder
-- (name, ID number, phone on file) and the code goes to the issuer's phone.
-- A session's last error can now say the card was not verified, which
-- SQLite adds to the CHECK by rebuilding the table (as 0003 does; rows kept).
PRAGMA defer_foreign_keys = ON;

CREATE TABLE bind_sessions_copy AS SELECT * FROM bind_sessions;
DROP TABLE bind_sessions;
CREATE TABLE bind_sessions (
    id                TEXT PRIMARY KEY,
    merchant_id       TEXT NOT NULL REFERENCES merchants (id),
    merchant_user_id  TEXT NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('BIND', 'BIND_AND_PAY')),
    presentation      TEXT NOT NULL CHECK (presentation IN ('REDIRECT', 'EMBEDDED', 'POPUP')),
    return_url        TEXT NOT NULL,
    prefill_name      TEXT,
    prefill_phone     TEXT,
    status            TEXT NOT NULL
        CHECK (status IN ('OPEN', 'AWAITING_VERIFICATION', 'CHARGING', 'COMPLETED', 'FAILED')),
    version           BIGINT NOT NULL,
    created_ms        BIGINT NOT NULL,
    expires_ms        BIGINT NOT NULL,
    attempts_left     BIGINT NOT NULL,
    idempotency_key   TEXT NOT NULL,
    request_hash      TEXT NOT NULL,
    order_id          TEXT,
    amount_minor      BIGINT,
    currency          TEXT,
    description       TEXT,
    shopper_name      TEXT,
    id_number_ct      BLOB,
    id_key_id         TEXT,
    phone             TEXT,
    pan_ct            BLOB,
    pan_key_id        TEXT,
    card_fingerprint  TEXT,
    card_brand        TEXT CHECK (card_brand IS NULL OR card_brand IN
                          ('VISA', 'MASTERCARD', 'UNIONPAY', 'AMEX', 'JCB', 'DISCOVER', 'OTHER')),
    card_last4        TEXT,
    exp_month         BIGINT,
    exp_year          BIGINT,
    otp_hash          TEXT,
    otp_expires_ms    BIGINT,
    otp_tries_left    BIGINT NOT NULL,
    otp_sent_ms       BIGINT,
    otp_resends       BIGINT NOT NULL,
    last_error        TEXT CHECK (last_error IS NULL OR last_error IN
                          ('CARD_NOT_VERIFIED', 'CARD_DECLINED', 'WRONG_CODE')),
    binding_id        TEXT,
    payment_id        TEXT,
    -- A BindAndPay session carries its purchase; a Bind session none.
    CONSTRAINT bind_sessions_purchase_by_kind
        CHECK ((kind = 'BIND_AND_PAY') =
               (order_id IS NOT NULL AND amount_minor IS NOT NULL AND currency IS NOT NULL)),
    -- Awaiting a code or charging: the verified card is there.
    CONSTRAINT bind_sessions_submission_present
        CHECK (status NOT IN ('AWAITING_VERIFICATION', 'CHARGING')
               OR (pan_ct IS NOT NULL AND pan_key_id IS NOT NULL AND id_number_ct IS NOT NULL
                   AND id_key_id IS NOT NULL AND shopper_name IS NOT NULL AND phone IS NOT NULL
                   AND card_fingerprint IS NOT NULL AND card_brand IS NOT NULL
                   AND card_last4 IS NOT NULL AND exp_month IS NOT NULL AND exp_year IS NOT NULL)),
    CONSTRAINT bind_sessions_code_present
        CHECK (status <> 'AWAITING_VERIFICATION'
               OR (otp_hash IS NOT NULL AND otp_expires_ms IS NOT NULL AND otp_sent_ms IS NOT NULL)),
    CONSTRAINT bind_sessions_charging_has_payment
        CHECK (status <> 'CHARGING' OR payment_id IS NOT NULL),
    CONSTRAINT bind_sessions_completed_has_binding
        CHECK (status <> 'COMPLETED' OR binding_id IS NOT NULL)
);
INSERT INTO bind_sessions SELECT * FROM bind_sessions_copy;
DROP TABLE bind_sessions_copy;
CREATE UNIQUE INDEX bind_sessions_idempotency ON bind_sessions (merchant_id, idempotency_key);

-- Every answer of a card's issuer at binding time, with its detail: the
-- merchant is told only whether the card was verified (CARD_NOT_VERIFIED
-- names no field), so the detail is kept here, for the institution.
CREATE TABLE card_checks (
    id                INTEGER PRIMARY KEY,
    merchant_id       TEXT NOT NULL REFERENCES merchants (id),
    session_id        TEXT NOT NULL,
    card_fingerprint  TEXT NOT NULL,
    outcome           TEXT NOT NULL CHECK (outcome IN
                          ('VERIFIED', 'HOLDER_MISMATCH', 'NO_CARDHOLDER_RECORD',
                           'INSUFFICIENT_FUNDS', 'DO_NOT_HONOR', 'EXPIRED_CARD',
                           'CVV_MISMATCH', 'PROCESSING_ERROR')),
    checked_ms        BIGINT NOT NULL
);
CREATE INDEX card_checks_by_merchant ON card_checks (merchant_id, checked_ms);
CREATE INDEX card_checks_by_card ON card_checks (card_fingerprint, checked_ms);

-- The most a BindAndPay may charge (a first payment, before any binding),
-- per merchant; a merchant registered before gets its per-payment
-- auth-free limit.
ALTER TABLE merchants ADD COLUMN bind_and_pay_limit BIGINT NOT NULL DEFAULT 0;
UPDATE merchants SET bind_and_pay_limit = per_payment_limit;
