-- Every status and code column holds only the values the shop knows (the
-- spellings of `store/rows.rs`): an unknown value can no longer be written,
-- and one read back is an error that names its column.
--
-- SQLite adds CHECK constraints only by rebuilding a table: its rows are
-- copied aside, the table dropped and created again under its own name with
-- its constraints (so other tables' foreign keys still name it), the rows
-- put back (existing data kept; a card brand the shop could not name was
-- stored as '' and becomes OTHER, as it would be named now), its indexes
-- made again. Foreign keys are checked at commit, when every referenced row
-- is back.
PRAGMA defer_foreign_keys = ON;

UPDATE users SET card_brand = 'OTHER'
 WHERE card_brand IS NOT NULL
   AND card_brand NOT IN ('VISA', 'MASTERCARD', 'UNIONPAY', 'AMEX', 'JCB', 'DISCOVER', 'OTHER');

CREATE TABLE users_copy AS SELECT * FROM users;
DROP TABLE users;
CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    display_name   TEXT NOT NULL,
    phone          TEXT,
    created_ms     BIGINT NOT NULL,
    -- The active binding, if any.
    binding_id     TEXT,
    binding_token  TEXT,
    card_brand     TEXT CHECK (card_brand IS NULL OR card_brand IN
                       ('VISA', 'MASTERCARD', 'UNIONPAY', 'AMEX', 'JCB', 'DISCOVER', 'OTHER')),
    card_last4     TEXT,
    exp_month      BIGINT,
    exp_year       BIGINT,
    bound_ms       BIGINT,
    -- A card on file is the whole card: binding, token and summary.
    CONSTRAINT users_card_complete
        CHECK ((binding_id IS NULL) = (binding_token IS NULL)
               AND (binding_id IS NULL OR (card_brand IS NOT NULL AND exp_month IS NOT NULL
                                           AND exp_year IS NOT NULL)))
);
INSERT INTO users SELECT * FROM users_copy;
DROP TABLE users_copy;

CREATE TABLE orders_copy AS SELECT * FROM orders;
DROP TABLE orders;
CREATE TABLE orders (
    id                     TEXT PRIMARY KEY,
    user_id                TEXT NOT NULL REFERENCES users (id),
    amount_minor           BIGINT NOT NULL CHECK (amount_minor > 0),
    currency               TEXT NOT NULL,
    description            TEXT NOT NULL,
    status                 TEXT NOT NULL CHECK (status IN
                               ('PENDING_PAYMENT', 'AWAITING_SHOPPER', 'PAID', 'DECLINED', 'CANCELLED')),
    decline_reason         TEXT,
    payment_id             TEXT,
    refunded_minor         BIGINT NOT NULL CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor),
    session_id             TEXT,
    page_url               TEXT,
    paid_with_card_on_file BOOLEAN NOT NULL,
    presentation           TEXT NOT NULL CHECK (presentation IN
                               ('PRESENTATION_REDIRECT', 'PRESENTATION_EMBEDDED', 'PRESENTATION_POPUP')),
    return_url             TEXT NOT NULL,
    idempotency_key        TEXT NOT NULL UNIQUE,
    request_hash           TEXT NOT NULL,
    created_ms             BIGINT NOT NULL,
    updated_ms             BIGINT NOT NULL
);
INSERT INTO orders SELECT * FROM orders_copy;
DROP TABLE orders_copy;
CREATE INDEX orders_by_user ON orders (user_id, created_ms);
CREATE INDEX orders_pending ON orders (status, updated_ms);
