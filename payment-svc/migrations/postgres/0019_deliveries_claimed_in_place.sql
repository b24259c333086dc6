-- A claim moves a pending delivery's `next_attempt_ms` (its lease) and
-- counts the attempt; nothing reads `deliveries_due` any more (the claim
-- walks `deliveries_pending_in_order`, 0016). While that index was there,
-- every claim wrote a new version of the row into all five indexes. Without
-- it the claim changes no indexed column, and with room left on each page
-- PostgreSQL updates the row in place (a HOT update): no index is written.
DROP INDEX IF EXISTS deliveries_due;
ALTER TABLE deliveries SET (fillfactor = 50);
