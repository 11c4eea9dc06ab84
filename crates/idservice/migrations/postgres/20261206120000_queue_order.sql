-- The linked-application queue without a global lock. Before, every transaction that queued a
-- change took one advisory lock until it ended, so that sequence numbers became visible in
-- order; it made all user writes of all nodes run one after the other.
--
-- Now each queued row carries the id of the transaction that wrote it (`tx`), and the queue is
-- read in (tx, seq) order, only up to the oldest transaction still running anywhere (the
-- snapshot's xmin): every transaction below it has ended, so no row can still appear before
-- the last one read. An application's cursor is a (cursor_tx, cursor) pair.
ALTER TABLE outbound_events ADD COLUMN tx BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbound_events ALTER COLUMN tx SET DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX outbound_events_order ON outbound_events (tx, seq);

ALTER TABLE apps ADD COLUMN cursor_tx BIGINT NOT NULL DEFAULT 0;

CREATE OR REPLACE FUNCTION queue_outbound(uid TEXT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbound_events (user_id) VALUES (uid);
END $$;
