-- Binding only the cardholder: the issuer verifies the card and its holder
-- (name, ID number, phone on file) and the code goes to the issuer's phone.
-- A session's last error can now say the card was not verified.
ALTER TABLE bind_sessions
    DROP CONSTRAINT bind_sessions_last_error_known,
    ADD CONSTRAINT bind_sessions_last_error_known
        CHECK (last_error IS NULL OR last_error IN
               ('CARD_NOT_VERIFIED', 'CARD_DECLINED', 'WRONG_CODE'));

-- Every answer of a card's issuer at binding time, with its detail: the
-- merchant is told only whether the card was verified (CARD_NOT_VERIFIED
-- names no field), so the detail is kept here, for the institution.
CREATE TABLE card_checks (
    id                BIGSERIAL PRIMARY KEY,
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
ALTER TABLE merchants ALTER COLUMN bind_and_pay_limit DROP DEFAULT;
