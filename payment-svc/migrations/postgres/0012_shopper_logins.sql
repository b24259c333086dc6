-- The shopper's own page at the payment institution (`/my-bindings`): a
-- shopper proves control of a phone number with a one-time code, then sees
-- and ends the bindings made under it. A sign-in is found by the keyed hash
-- of the secret its browser holds in a cookie (never the secret itself);
-- the code is stored as a keyed hash too.
CREATE TABLE shopper_logins (
    id_hash          TEXT PRIMARY KEY,
    phone            TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('AWAITING_CODE', 'SIGNED_IN')),
    code_hash        TEXT,
    code_expires_ms  BIGINT,
    tries_left       BIGINT NOT NULL,
    created_ms       BIGINT NOT NULL,
    -- The sign-in's end: the code's expiry, then 15 minutes after it was right.
    expires_ms       BIGINT NOT NULL,
    CHECK ((status = 'AWAITING_CODE') = (code_hash IS NOT NULL))
);
CREATE INDEX shopper_logins_expiry ON shopper_logins (expires_ms);

-- A shopper's active bindings, across merchants, by the phone on file.
CREATE INDEX bindings_active_by_phone ON bindings (phone) WHERE status = 'ACTIVE';
