-- Velocity limits: each counted event (a card check, a code sent, a code
-- tried) is a row keyed by what it is counted against (a merchant id, a
-- card's keyed fingerprint, a phone's keyed hash, a session id). A limit is
-- a count over a sliding window, checked and recorded in one transaction;
-- rows older than their window are deleted as they are passed.
CREATE TABLE velocity_events (
    counter  TEXT NOT NULL CHECK (counter IN
                 ('CARD_CHECKS_PER_MERCHANT', 'CARD_CHECKS_PER_CARD',
                  'CODES_PER_MERCHANT', 'CODES_PER_PHONE',
                  'CODE_TRIES_PER_SESSION', 'CODE_TRIES_PER_PHONE')),
    key      TEXT NOT NULL,
    at_ms    BIGINT NOT NULL
);
CREATE INDEX velocity_events_by_key ON velocity_events (counter, key, at_ms);
