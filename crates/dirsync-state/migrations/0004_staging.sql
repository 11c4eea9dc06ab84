-- Image and cache rows a full run has produced but not yet committed (issue #5: the initial run held
-- 100,000 of them in memory until its end). They are written here as soon as the directory is
-- mapped, and copied into directory_image in the run's final transaction, with the cursor
-- and the target cache, so that the image still never gets ahead of the cursor. Rows a killed
-- run left here are cleared when the next run starts.
CREATE TABLE image_staging (
    kind        TEXT NOT NULL CHECK (kind IN ('user', 'group')),
    id          TEXT NOT NULL,
    dn          TEXT NOT NULL,
    entry       TEXT NOT NULL,
    anchor      TEXT,
    name_key    TEXT,
    member_keys TEXT,
    hash        INTEGER,
    PRIMARY KEY (kind, id)
);

-- The same for the target cache rows a full run found different from the stored ones.
CREATE TABLE cache_staging (
    kind          TEXT NOT NULL CHECK (kind IN ('user', 'group')),
    id            TEXT NOT NULL,
    pending       INTEGER NOT NULL DEFAULT 0,
    resource      TEXT NOT NULL,
    external_id   TEXT,
    name          TEXT,
    name_key      TEXT,
    active        INTEGER NOT NULL DEFAULT 1,
    pending_since TEXT,
    hash          INTEGER,
    PRIMARY KEY (kind, id)
);
