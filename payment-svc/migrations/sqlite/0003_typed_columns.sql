-- Every status, kind and code column holds only the values the service
-- knows (the spellings of `store/rows.rs`), and each state has its data: an
-- unknown value can no longer be written, and one read back is an error that
-- names its column (never taken for a default).
--
-- SQLite adds CHECK constraints only by rebuilding a table: its rows are
-- copied aside, the table dropped and created again under its own name with
-- its constraints (so other tables' foreign keys still name it), the rows
-- put back (existing data kept: it was all written by the service and
-- satisfies them), its indexes made again. Foreign keys are checked at
-- commit, when every referenced row is back. (The number
-- 0003 matches the PostgreSQL migration that adds the same constraints.)
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
    last_error        TEXT CHECK (last_error IS NULL OR last_error IN ('CARD_DECLINED', 'WRONG_CODE')),
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

CREATE TABLE bindings_copy AS SELECT * FROM bindings;
DROP TABLE bindings;
CREATE TABLE bindings (
    id                TEXT PRIMARY KEY,
    merchant_id       TEXT NOT NULL REFERENCES merchants (id),
    merchant_user_id  TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('ACTIVE', 'REVOKED')),
    card_fingerprint  TEXT NOT NULL,
    pan_ct            BLOB NOT NULL,
    pan_key_id        TEXT NOT NULL,
    card_brand        TEXT NOT NULL CHECK (card_brand IN
                          ('VISA', 'MASTERCARD', 'UNIONPAY', 'AMEX', 'JCB', 'DISCOVER', 'OTHER')),
    card_last4        TEXT NOT NULL,
    exp_month         BIGINT NOT NULL,
    exp_year          BIGINT NOT NULL,
    holder_name       TEXT NOT NULL,
    id_number_ct      BLOB NOT NULL,
    id_key_id         TEXT NOT NULL,
    phone             TEXT NOT NULL,
    currency          TEXT NOT NULL,
    per_payment_limit BIGINT NOT NULL,
    daily_limit       BIGINT NOT NULL,
    usage_day         BIGINT NOT NULL,
    usage_amount      BIGINT NOT NULL,
    created_ms        BIGINT NOT NULL,
    revoked_ms        BIGINT,
    revoke_reason     TEXT,
    CONSTRAINT bindings_revoked_has_time CHECK (status <> 'REVOKED' OR revoked_ms IS NOT NULL)
);
INSERT INTO bindings SELECT * FROM bindings_copy;
DROP TABLE bindings_copy;
CREATE UNIQUE INDEX bindings_one_active_per_card
    ON bindings (merchant_id, merchant_user_id, card_fingerprint) WHERE status = 'ACTIVE';
CREATE INDEX bindings_by_user ON bindings (merchant_id, merchant_user_id, created_ms);

CREATE TABLE payments_copy AS SELECT * FROM payments;
DROP TABLE payments;
CREATE TABLE payments (
    id                    TEXT PRIMARY KEY,
    merchant_id           TEXT NOT NULL,
    merchant_user_id      TEXT NOT NULL,
    binding_id            TEXT,
    session_id            TEXT,
    order_id              TEXT NOT NULL,
    amount_minor          BIGINT NOT NULL CHECK (amount_minor > 0),
    currency              TEXT NOT NULL,
    description           TEXT NOT NULL,
    status                TEXT NOT NULL CHECK (status IN ('PENDING', 'SUCCEEDED', 'DECLINED')),
    decline_reason        TEXT CHECK (decline_reason IS NULL OR decline_reason IN
                              ('INSUFFICIENT_FUNDS', 'DO_NOT_HONOR', 'EXPIRED_CARD', 'CVV_MISMATCH',
                               'PROCESSING_ERROR')),
    acquirer_ref          TEXT,
    counted_day           BIGINT,
    refunded_minor        BIGINT NOT NULL CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor),
    shopper_authenticated BOOLEAN NOT NULL,
    idempotency_key       TEXT,
    request_hash          TEXT,
    created_ms            BIGINT NOT NULL,
    updated_ms            BIGINT NOT NULL,
    CONSTRAINT payments_declined_has_reason
        CHECK (status <> 'DECLINED' OR decline_reason IS NOT NULL),
    CONSTRAINT payments_succeeded_has_reference
        CHECK (status <> 'SUCCEEDED' OR acquirer_ref IS NOT NULL)
);
INSERT INTO payments SELECT * FROM payments_copy;
DROP TABLE payments_copy;
CREATE UNIQUE INDEX payments_idempotency ON payments (merchant_id, idempotency_key);

CREATE TABLE refunds_copy AS SELECT * FROM refunds;
DROP TABLE refunds;
CREATE TABLE refunds (
    id               TEXT PRIMARY KEY,
    merchant_id      TEXT NOT NULL,
    payment_id       TEXT NOT NULL REFERENCES payments (id),
    amount_minor     BIGINT NOT NULL CHECK (amount_minor > 0),
    currency         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED')),
    reason           TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    request_hash     TEXT NOT NULL,
    created_ms       BIGINT NOT NULL,
    updated_ms       BIGINT NOT NULL
);
INSERT INTO refunds SELECT * FROM refunds_copy;
DROP TABLE refunds_copy;
CREATE UNIQUE INDEX refunds_idempotency ON refunds (merchant_id, idempotency_key);
CREATE INDEX refunds_by_payment ON refunds (payment_id);
