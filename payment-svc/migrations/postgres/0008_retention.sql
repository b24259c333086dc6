-- Retention. A revoked binding can no longer pay, so it keeps nothing that
-- only paying needed: its sealed card number, the holder's name, sealed ID
-- number and phone are wiped when it is revoked (and, here, for the ones
-- revoked before). An active binding keeps them all.
ALTER TABLE bindings
    ALTER COLUMN pan_ct DROP NOT NULL,
    ALTER COLUMN pan_key_id DROP NOT NULL,
    ALTER COLUMN holder_name DROP NOT NULL,
    ALTER COLUMN id_number_ct DROP NOT NULL,
    ALTER COLUMN id_key_id DROP NOT NULL,
    ALTER COLUMN phone DROP NOT NULL;
UPDATE bindings SET pan_ct = NULL, pan_key_id = NULL, holder_name = NULL,
    id_number_ct = NULL, id_key_id = NULL, phone = NULL
    WHERE status = 'REVOKED';
ALTER TABLE bindings
    ADD CONSTRAINT bindings_active_has_card_and_holder
        CHECK (status <> 'ACTIVE' OR (pan_ct IS NOT NULL AND pan_key_id IS NOT NULL
               AND holder_name IS NOT NULL AND id_number_ct IS NOT NULL
               AND id_key_id IS NOT NULL AND phone IS NOT NULL)),
    ADD CONSTRAINT bindings_revoked_keeps_nothing
        CHECK (status <> 'REVOKED' OR (pan_ct IS NULL AND id_number_ct IS NULL
               AND holder_name IS NULL AND phone IS NULL));

-- The purge job finds sessions past their expiry, and records past their
-- retention, by time.
CREATE INDEX bind_sessions_by_expiry ON bind_sessions (expires_ms);
CREATE INDEX card_checks_by_time ON card_checks (checked_ms);
