-- payment-svc's event feed, consumed (domain/feed.rs). `feed_position`
-- holds the cursor of the last event applied (one row); `applied_events`
-- every event applied, by id, so one delivered again changes nothing;
-- `resource_versions` the newest version applied per resource, so an older
-- change arriving late changes nothing. The three move in one transaction.
CREATE TABLE feed_position (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    cursor      TEXT NOT NULL,
    updated_ms  BIGINT NOT NULL
);

CREATE TABLE applied_events (
    event_id          TEXT PRIMARY KEY,
    event_type        TEXT NOT NULL,
    resource_id       TEXT NOT NULL,
    resource_version  BIGINT NOT NULL,
    cursor            TEXT NOT NULL,
    outcome           TEXT NOT NULL CHECK (outcome IN ('APPLIED', 'STALE')),
    applied_ms        BIGINT NOT NULL
);
CREATE INDEX applied_events_recent ON applied_events (applied_ms);

CREATE TABLE resource_versions (
    resource_id  TEXT PRIMARY KEY,
    version      BIGINT NOT NULL
);
