-- payment-svc schema, SQLite. Times are unix milliseconds; money is integer
-- minor units. Card and ID numbers are AES-256-GCM ciphertexts (`*_ct`) with
-- the id of the key that sealed them (`*_key_id`).

CREATE TABLE merchants (
    id                TEXT PRIMARY KEY,
    display_name      TEXT NOT NULL,
    cert_identity     TEXT NOT NULL UNIQUE,
    allowed_origins   TEXT NOT NULL,           -- JSON array of origins
    return_urls       TEXT NOT NULL,           -- JSON array of URL prefixes
    direct_entry      BOOLEAN NOT NULL,
    currency          TEXT NOT NULL,
    per_payment_limit BIGINT NOT NULL,
    daily_limit       BIGINT NOT NULL,
    created_ms        BIGINT NOT NULL
);

CREATE TABLE bind_sessions (
    id                TEXT PRIMARY KEY,
    merchant_id       TEXT NOT NULL REFERENCES merchants (id),
    merchant_user_id  TEXT NOT NULL,
    kind              TEXT NOT NULL,
    presentation      TEXT NOT NULL,
    return_url        TEXT NOT NULL,
    prefill_name      TEXT,
    prefill_phone     TEXT,
    status            TEXT NOT NULL,
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
    card_brand        TEXT,
    card_last4        TEXT,
    exp_month         BIGINT,
    exp_year          BIGINT,
    otp_hash          TEXT,
    otp_expires_ms    BIGINT,
    otp_tries_left    BIGINT NOT NULL,
    otp_sent_ms       BIGINT,
    otp_resends       BIGINT NOT NULL,
    last_error        TEXT,
    binding_id        TEXT,
    payment_id        TEXT
);
CREATE UNIQUE INDEX bind_sessions_idempotency ON bind_sessions (merchant_id, idempotency_key);

CREATE TABLE bindings (
    id                TEXT PRIMARY KEY,
    merchant_id       TEXT NOT NULL REFERENCES merchants (id),
    merchant_user_id  TEXT NOT NULL,
    status            TEXT NOT NULL,
    card_fingerprint  TEXT NOT NULL,
    pan_ct            BLOB NOT NULL,
    pan_key_id        TEXT NOT NULL,
    card_brand        TEXT NOT NULL,
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
    revoke_reason     TEXT
);
-- One active binding per card per merchant user: binding the same card again
-- returns the existing binding.
CREATE UNIQUE INDEX bindings_one_active_per_card
    ON bindings (merchant_id, merchant_user_id, card_fingerprint) WHERE status = 'ACTIVE';
CREATE INDEX bindings_by_user ON bindings (merchant_id, merchant_user_id, created_ms);

-- No foreign key to merchants on the hot tables: the merchant id comes from
-- the verified client certificate, and on PostgreSQL each key check would
-- share-lock the one merchant row that every concurrent payment references.
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
    status                TEXT NOT NULL,
    decline_reason        TEXT,
    acquirer_ref          TEXT,
    counted_day           BIGINT,
    refunded_minor        BIGINT NOT NULL CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor),
    shopper_authenticated BOOLEAN NOT NULL,
    idempotency_key       TEXT,
    request_hash          TEXT,
    created_ms            BIGINT NOT NULL,
    updated_ms            BIGINT NOT NULL
);
CREATE UNIQUE INDEX payments_idempotency ON payments (merchant_id, idempotency_key);

CREATE TABLE refunds (
    id               TEXT PRIMARY KEY,
    merchant_id      TEXT NOT NULL,
    payment_id       TEXT NOT NULL REFERENCES payments (id),
    amount_minor     BIGINT NOT NULL CHECK (amount_minor > 0),
    currency         TEXT NOT NULL,
    status           TEXT NOT NULL,
    reason           TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    request_hash     TEXT NOT NULL,
    created_ms       BIGINT NOT NULL,
    updated_ms       BIGINT NOT NULL
);
CREATE UNIQUE INDEX refunds_idempotency ON refunds (merchant_id, idempotency_key);
CREATE INDEX refunds_by_payment ON refunds (payment_id);
