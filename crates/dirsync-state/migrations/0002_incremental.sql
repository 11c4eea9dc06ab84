-- Incremental sync (behaviour §3 "Incremental reads", 4.6). All three are written in ONE
-- transaction at the end of a run, so the cursor never gets ahead of the image and the
-- target cache it belongs to.

-- The old cursor shape (one row per source, cookie/usn columns) was never written by a run;
-- a cursor is now the reader's own serialised `source::changes::Cursor`.
DROP TABLE cursors;
CREATE TABLE cursors (
    source     TEXT PRIMARY KEY,    -- always 'directory': one source per instance
    cursor     TEXT NOT NULL,       -- JSON of source::changes::Cursor
    updated_at TEXT NOT NULL
);

-- The directory as of the cursor: stable id (entryUUID / objectGUID text) -> entry.
-- `entry` is compact JSON: {"dn":…, "a":{name:[value…]}}, a value a string when it is UTF-8,
-- else {"b": base64}.
CREATE TABLE directory_image (
    kind  TEXT NOT NULL CHECK (kind IN ('user', 'group')),
    id    TEXT NOT NULL,
    dn    TEXT NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);

-- What the target held after the run, as the target returned it (resource incl. members),
-- enough to rebuild the planner's target snapshot without listing the target.
CREATE TABLE target_cache (
    kind     TEXT NOT NULL CHECK (kind IN ('user', 'group')),
    id       TEXT NOT NULL,
    pending  INTEGER NOT NULL DEFAULT 0,
    resource TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
