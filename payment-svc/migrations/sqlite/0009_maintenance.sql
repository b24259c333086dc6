-- One-time passes over stored data that SQL alone cannot make (they need
-- the service's keys), each recorded here once done: a replica that starts
-- later skips it.
CREATE TABLE maintenance (
    name     TEXT PRIMARY KEY,
    done_ms  BIGINT NOT NULL
);
