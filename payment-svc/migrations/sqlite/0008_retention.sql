-- Retention. A revoked binding can no longer pay, so it keeps nothing that
-- only paying needed: its sealed card number, the holder's name, sealed ID
-- number and phone are wiped when it is revoked (and, here, for the ones
-- revoked before). An active binding keeps them all.
--
-- SQLite changes NOT NULL and CHECK constraints only by rebuilding the
-- table, as 0003 does (rows copied aside, the table made again under its
-- own name, the rows put back, its indexes made again).
CREATE TABLE bindings_copy AS SELECT * FROM bindings;
DROP TABLE bindings;
CREATE TABLE bindings (
    id                TEXT PRIMARY KEY,
    merchant_id       TEXT NOT NULL REFERENCES merchants (id),
    merchant_user_id  TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('ACTIVE', 'REVOKED')),
    card_fingerprint  TEXT NOT NULL,
    pan_ct            BLOB,
    pan_key_id        TEXT,
    card_brand        TEXT NOT NULL CHECK (card_brand IN
                          ('VISA', 'MASTERCARD', 'UNIONPAY', 'AMEX', 'JCB', 'DISCOVER', 'OTHER')),
    card_last4        TEXT NOT NULL,
    exp_month         BIGINT NOT NULL,
    exp_year          BIGINT NOT NULL,
    holder_name       TEXT,
    id_number_ct      BLOB,
    id_key_id         TEXT,
    phone             TEXT,
    currency          TEXT NOT NULL,
    per_payment_limit BIGINT NOT NULL,
    daily_limit       BIGINT NOT NULL,
    usage_day         BIGINT NOT NULL,
    usage_amount      BIGINT NOT NULL,
    created_ms        BIGINT NOT NULL,
    revoked_ms        BIGINT,
    revoke_reason     TEXT,
    CONSTRAINT bindings_revoked_has_time CHECK (status <> 'REVOKED' OR revoked_ms IS NOT NULL),
    CONSTRAINT bindings_active_has_card_and_holder
        CHECK (status <> 'ACTIVE' OR (pan_ct IS NOT NULL AND pan_key_id IS NOT NULL
               AND holder_name IS NOT NULL AND id_number_ct IS NOT NULL
               AND id_key_id IS NOT NULL AND phone IS NOT NULL)),
    CONSTRAINT bindings_revoked_keeps_nothing
        CHECK (status <> 'REVOKED' OR (pan_ct IS NULL AND id_number_ct IS NULL
               AND holder_name IS NULL AND phone IS NULL))
);
INSERT INTO bindings
    SELECT id, merchant_id, merchant_user_id, status, card_fingerprint,
           CASE WHEN status = 'ACTIVE' THEN pan_ct END,
           CASE WHEN status = 'ACTIVE' THEN pan_key_id END,
           card_brand, card_last4, exp_month, exp_year,
           CASE WHEN status = 'ACTIVE' THEN holder_name END,
           CASE WHEN status = 'ACTIVE' THEN id_number_ct END,
           CASE WHEN status = 'ACTIVE' THEN id_key_id END,
           CASE WHEN status = 'ACTIVE' THEN phone END,
           currency, per_payment_limit, daily_limit, usage_day, usage_amount,
           created_ms, revoked_ms, revoke_reason
    FROM bindings_copy;
DROP TABLE bindings_copy;
CREATE UNIQUE INDEX bindings_one_active_per_card
    ON bindings (merchant_id, merchant_user_id, card_fingerprint) WHERE status = 'ACTIVE';
CREATE INDEX bindings_by_user ON bindings (merchant_id, merchant_user_id, created_ms);

-- The purge job finds sessions past their expiry, and records past their
-- retention, by time.
CREATE INDEX bind_sessions_by_expiry ON bind_sessions (expires_ms);
CREATE INDEX card_checks_by_time ON card_checks (checked_ms);
