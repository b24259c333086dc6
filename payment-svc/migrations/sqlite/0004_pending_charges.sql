-- Charges in flight, and who is making them. A payment is written PENDING
-- before the card network is asked; until its outcome is recorded it has a
-- row here naming the payment-svc process (`owner`, a random key) charging
-- it; the outcome deletes it in the same transaction. On SQLite one process
-- owns the database, so a row of another owner is one a gone process left:
-- it is resolved with the card network at once (domain::recovery). Rows for
-- payments left PENDING before this migration have no owner: gone.
CREATE TABLE pending_charges (
    payment_id  TEXT PRIMARY KEY,
    owner       BIGINT,
    created_ms  BIGINT NOT NULL
);
INSERT INTO pending_charges (payment_id, owner, created_ms)
    SELECT id, NULL, created_ms FROM payments WHERE status = 'PENDING';
