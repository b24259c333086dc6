-- The deliveries worker claims the oldest pending deliveries first: in seq
-- order, among the pending only. Without this index that scan walked the
-- primary key through every delivery ever made (all but a few delivered)
-- and grew slower with the table.
CREATE INDEX deliveries_pending_in_order ON deliveries (seq) WHERE status = 'PENDING';
