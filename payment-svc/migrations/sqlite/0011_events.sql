-- The event feed (README: Events). Every change a merchant must know is
-- written here in the same transaction as the change itself (an outbox):
-- none is lost, none is sent for a change that rolled back.
--
-- `write_no` is the order rows were written in; a resource's changes are
-- written one after another (each holds the resource's row lock until it
-- commits), so it is strictly increasing per resource: the event's
-- `resource_version`. Numbers are never reused, even after old events go.
--
-- `seq` is the merchant's cursor. Writers commit out of order, so it is
-- given after commit, by one sequencer at a time, in `write_no` order:
-- a reader that saw `seq` N never finds an event below N appear later.
CREATE TABLE events (
    write_no     INTEGER PRIMARY KEY AUTOINCREMENT,
    seq          BIGINT UNIQUE,
    event_id     TEXT NOT NULL UNIQUE,
    merchant_id  TEXT NOT NULL,
    event_type   TEXT NOT NULL CHECK (event_type IN (
        'BINDING_CREATED', 'BINDING_UPDATED', 'BINDING_REVOKED',
        'PAYMENT_SUCCEEDED', 'PAYMENT_DECLINED', 'REFUND_SUCCEEDED',
        'BIND_SESSION_COMPLETED', 'BIND_SESSION_FAILED', 'BIND_SESSION_EXPIRED')),
    resource_id  TEXT NOT NULL,
    occurred_ms  BIGINT NOT NULL,
    -- The resource after the change, as JSON (store/rows.rs), secrets left out.
    state        TEXT NOT NULL
);
CREATE INDEX events_unsequenced ON events (write_no) WHERE seq IS NULL;
CREATE INDEX events_feed ON events (merchant_id, seq) WHERE seq IS NOT NULL;

-- Who ended a binding: the merchant (Unbind), the shopper (at the payment
-- institution), its card's expiry, or an operator. Those ended before this
-- migration were ended by their merchant.
ALTER TABLE bindings ADD COLUMN revoked_by TEXT
    CHECK (revoked_by IN ('MERCHANT', 'SHOPPER', 'EXPIRY', 'OPERATOR'));
UPDATE bindings SET revoked_by = 'MERCHANT' WHERE status = 'REVOKED';
