-- The agent's local state (behaviour §4.6). A cache: deleting it is always safe, the next run
-- rebuilds it from the target.

-- One row per object this instance synchronises, keyed by its source anchor (the externalId
-- it sends). `owned` = this instance created or explicitly adopted the target object.
CREATE TABLE objects (
    kind          TEXT NOT NULL CHECK (kind IN ('user', 'group')),
    anchor        TEXT NOT NULL,
    target_id     TEXT NOT NULL,
    dn            TEXT,
    name          TEXT,             -- userName or displayName, for reports
    fingerprint   TEXT,             -- SHA-256 of the attributes last confirmed on the target
    owned         INTEGER NOT NULL DEFAULT 1,
    pending_since TEXT,             -- set while the agent itself keeps the user pending (plain targets)
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (kind, anchor)
);
CREATE INDEX objects_target_id ON objects (kind, target_id);

-- Small facts about the instance: the effective-config fingerprint, the target's kind, the
-- time of the last full reconcile.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Incremental-read cursors (DirSync cookie, uSNChanged + invocationId, syncrepl cookie).
CREATE TABLE cursors (
    source        TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    cookie        BLOB,
    usn           INTEGER,
    invocation_id TEXT,
    updated_at    TEXT NOT NULL
);

CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    mode        TEXT NOT NULL,
    dry_run     INTEGER NOT NULL,
    exit_code   INTEGER,
    report      TEXT               -- the run's JSON report (counts, failures); never secrets
);
