-- Merchant identities that can be stopped. A merchant is the name in its
-- certificate's SAN URI (urn:paybind:merchant:NAME) *and* one of the
-- certificates registered for it here, by SHA-256 fingerprint: another
-- certificate the CA signed for the same name is not enough. A certificate
-- can be revoked (at once, or at the end of a rotation's overlap) and a
-- merchant disabled; every replica sees it through `merchant_revision`.
CREATE TABLE merchant_certificates (
    fingerprint   TEXT PRIMARY KEY,        -- SHA-256 of the DER, lowercase hex
    merchant_id   TEXT NOT NULL REFERENCES merchants (id),
    not_after_ms  BIGINT NOT NULL,          -- the certificate's own expiry
    added_ms      BIGINT NOT NULL,
    revoked_ms    BIGINT                    -- refused from this instant on
);
CREATE INDEX merchant_certificates_by_merchant ON merchant_certificates (merchant_id);

ALTER TABLE merchants ADD COLUMN disabled_ms BIGINT;

-- Bumped in the transaction of every change to a merchant or its
-- certificates; each replica polls it and drops its cache when it moves.
CREATE TABLE merchant_revision (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    revision   BIGINT NOT NULL
);
INSERT INTO merchant_revision (singleton, revision) VALUES (1, 1);
