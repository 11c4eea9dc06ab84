-- The queue is read in (tx, seq) order, as on PostgreSQL, where `tx` is the writing
-- transaction. SQLite has one writer, so sequence numbers already become visible in order:
-- `tx` stays 0 and the order is the sequence number's.
ALTER TABLE outbound_events ADD COLUMN tx INTEGER NOT NULL DEFAULT 0;
CREATE INDEX outbound_events_order ON outbound_events (tx, seq);

ALTER TABLE apps ADD COLUMN cursor_tx INTEGER NOT NULL DEFAULT 0;
