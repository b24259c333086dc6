-- Bindings expire with their card (domain/bindings.rs, expire_bindings):
-- once the card's expiry month is over, the binding is revoked by EXPIRY.
-- The pass looks for active bindings by their expiry month.
CREATE INDEX bindings_active_by_expiry ON bindings ((exp_year * 12 + exp_month))
    WHERE status = 'ACTIVE';

-- Old events go after 30 days (domain/retention.rs), by when they occurred.
CREATE INDEX events_by_age ON events (occurred_ms);
