-- The storefront (issue: the shop's HTML pages). A shopper signs in with a
-- password (argon2, PHC string; NULL for users made over the gRPC API, who
-- cannot sign in) and chooses how binding pages are shown to them.
--
-- Every bind session is checked by the shop on its own until its outcome
-- is applied: `outcome` is set once it completed, failed or expired (NULL
-- while open), `next_check_ms` says when to ask payment-svc again. Sessions
-- started before this migration are checked once, soon.
--
-- SQLite adds a column with a CHECK constraint without a rebuild.
ALTER TABLE users ADD COLUMN password_hash TEXT;
ALTER TABLE users ADD COLUMN page_presentation TEXT NOT NULL DEFAULT 'PRESENTATION_REDIRECT'
    CHECK (page_presentation IN ('PRESENTATION_REDIRECT', 'PRESENTATION_EMBEDDED',
                                 'PRESENTATION_POPUP'));

ALTER TABLE bind_sessions ADD COLUMN outcome TEXT
    CHECK (outcome IS NULL OR outcome IN ('COMPLETED', 'FAILED', 'EXPIRED'));
ALTER TABLE bind_sessions ADD COLUMN next_check_ms BIGINT NOT NULL DEFAULT 0;
CREATE INDEX bind_sessions_due ON bind_sessions (next_check_ms) WHERE outcome IS NULL;
