-- Each merchant's purge horizon: the highest cursor among its events the
-- retention purge deleted. A cursor of the merchant's below it may be
-- followed by events that are gone: ListEvents and StreamEvents refuse it
-- (OUT_OF_RANGE, CURSOR_EXPIRED) instead of skipping them. Per merchant: a
-- quiet shop's cursor is not refused for other shops' purged events.
CREATE TABLE event_horizons (
    merchant_id     TEXT PRIMARY KEY,
    purged_through  BIGINT NOT NULL
);
