-- Bindings expire with their card (domain/bindings.rs, expire_bindings):
-- once the card's expiry month is over, the binding is revoked by EXPIRY.
-- The pass looks for active bindings by their expiry month.
CREATE INDEX bindings_active_by_expiry ON bindings ((exp_year * 12 + exp_month))
    WHERE status = 'ACTIVE';

-- Old events go after 30 days (domain/retention.rs), by when they occurred.
CREATE INDEX events_by_age ON events (occurred_ms);

-- A bind session that expires unfinished is told to its merchant once
-- (BIND_SESSION_EXPIRED, by the same pass); `expiry_told` says it was.
ALTER TABLE bind_sessions ADD COLUMN expiry_told BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX bind_sessions_untold_expiry ON bind_sessions (expires_ms)
    WHERE status IN ('OPEN', 'AWAITING_VERIFICATION') AND NOT expiry_told;
