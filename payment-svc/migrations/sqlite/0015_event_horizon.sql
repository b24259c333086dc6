-- The feed's purge horizon: the highest cursor among the events the
-- retention purge deleted. A merchant whose stored cursor is below it may
-- have missed events that are gone: ListEvents and StreamEvents refuse
-- that cursor (OUT_OF_RANGE, CURSOR_EXPIRED) instead of skipping them.
CREATE TABLE event_horizon (
    id              BIGINT PRIMARY KEY CHECK (id = 1),
    purged_through  BIGINT NOT NULL
);
INSERT INTO event_horizon (id, purged_through) VALUES (1, 0);
