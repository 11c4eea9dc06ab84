-- Incremental runs plan the changed objects only (issue #5). An image row keeps what the
-- mapping made of a user entry (anchor, userName key, the keys group member values resolve
-- to), so that unchanged users are neither decoded nor mapped again; a target cache row keeps
-- the fields the planner matches on, so that unchanged target users are loaded without their
-- resource. Rows written before these columns existed cannot be filled without the mapping:
-- they go, with the cursor, and the next run is a full one that writes them anew. The
-- hashes let a full run write only the rows that changed.
DELETE FROM cursors;
DELETE FROM directory_image;
DELETE FROM target_cache;

ALTER TABLE directory_image ADD COLUMN anchor TEXT;       -- users: the mapped externalId; NULL when the entry did not map
ALTER TABLE directory_image ADD COLUMN name_key TEXT;     -- users: the mapped userName, lower case
ALTER TABLE directory_image ADD COLUMN member_keys TEXT;  -- users: member-value keys (normalised DN or memberUid values), one per line
ALTER TABLE directory_image ADD COLUMN hash INTEGER;      -- hash of the entry: a full run compares it instead of decoding the entry

ALTER TABLE target_cache ADD COLUMN external_id TEXT;
ALTER TABLE target_cache ADD COLUMN name TEXT;            -- userName / displayName
ALTER TABLE target_cache ADD COLUMN name_key TEXT;        -- the same, lower case (the planner matches names that way)
ALTER TABLE target_cache ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
ALTER TABLE target_cache ADD COLUMN pending_since TEXT;
ALTER TABLE target_cache ADD COLUMN hash INTEGER;         -- hash of the row: a full run rewrites only rows that differ
CREATE INDEX target_cache_external_id ON target_cache (kind, external_id);
CREATE INDEX target_cache_name_key ON target_cache (kind, name_key);
