-- merchant-svc schema (PostgreSQL). The merchant's own database: its users, the binding
-- each user has at payment-svc (token and card summary), its orders, and the
-- bind sessions it started. Times are unix ms, money integer minor units.

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    display_name   TEXT NOT NULL,
    phone          TEXT,
    created_ms     BIGINT NOT NULL,
    -- The active binding, if any.
    binding_id     TEXT,
    binding_token  TEXT,
    card_brand     TEXT,
    card_last4     TEXT,
    exp_month      BIGINT,
    exp_year       BIGINT,
    bound_ms       BIGINT
);

CREATE TABLE orders (
    id                     TEXT PRIMARY KEY,
    user_id                TEXT NOT NULL REFERENCES users (id),
    amount_minor           BIGINT NOT NULL CHECK (amount_minor > 0),
    currency               TEXT NOT NULL,
    description            TEXT NOT NULL,
    status                 TEXT NOT NULL,
    decline_reason         TEXT,
    payment_id             TEXT,
    refunded_minor         BIGINT NOT NULL,
    session_id             TEXT,
    page_url               TEXT,
    paid_with_card_on_file BOOLEAN NOT NULL,
    presentation           TEXT NOT NULL,
    return_url             TEXT NOT NULL,
    idempotency_key        TEXT NOT NULL UNIQUE,
    request_hash           TEXT NOT NULL,
    created_ms             BIGINT NOT NULL,
    updated_ms             BIGINT NOT NULL
);
CREATE INDEX orders_by_user ON orders (user_id, created_ms);
CREATE INDEX orders_pending ON orders (status, updated_ms);

CREATE TABLE bind_sessions (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    order_id    TEXT REFERENCES orders (id),
    created_ms  BIGINT NOT NULL
);
