-- Events pushed to the merchant's NotificationService (domain/deliveries.rs).
--
-- A merchant's notification endpoint: where payment-svc calls it (gRPC over
-- mTLS, payment-svc's client certificate) and the name its server
-- certificate must carry. Set with `payment-svc merchant set-notify`.
CREATE TABLE merchant_endpoints (
    merchant_id  TEXT PRIMARY KEY REFERENCES merchants (id),
    url          TEXT NOT NULL,
    server_name  TEXT NOT NULL,
    updated_ms   BIGINT NOT NULL
);

-- One row per event to push, made when the event gets its cursor (`seq`)
-- if its merchant has an endpoint then. PENDING until acknowledged
-- (DELIVERED) or until the retry schedule is used up (FAILED).
-- `next_attempt_ms` is when it is due; a worker claiming it moves it past
-- the attempt's deadline (a lease), so no other replica takes the same
-- attempt, and one that died mid-attempt leaves it to be tried again.
CREATE TABLE deliveries (
    seq              BIGINT PRIMARY KEY,
    merchant_id      TEXT NOT NULL,
    resource_id      TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
    attempts         BIGINT NOT NULL,
    next_attempt_ms  BIGINT NOT NULL,
    created_ms       BIGINT NOT NULL,
    finished_ms      BIGINT
);
-- What is due, in feed order.
CREATE INDEX deliveries_due ON deliveries (next_attempt_ms) WHERE status = 'PENDING';
-- In order per resource: an event waits while an earlier one of the same
-- resource is pending.
CREATE INDEX deliveries_pending_by_resource ON deliveries (merchant_id, resource_id, seq)
    WHERE status = 'PENDING';
CREATE INDEX deliveries_by_merchant ON deliveries (merchant_id, seq);
CREATE INDEX deliveries_finished ON deliveries (finished_ms) WHERE status <> 'PENDING';

-- Every attempt: when, what came of it, how long it took.
CREATE TABLE delivery_attempts (
    seq          BIGINT NOT NULL,
    attempt      BIGINT NOT NULL,
    started_ms   BIGINT NOT NULL,
    latency_ms   BIGINT NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('ACKNOWLEDGED', 'REFUSED', 'UNREACHABLE',
                     'TIMED_OUT', 'NO_ENDPOINT', 'ABANDONED')),
    detail       TEXT NOT NULL,
    PRIMARY KEY (seq, attempt)
);
