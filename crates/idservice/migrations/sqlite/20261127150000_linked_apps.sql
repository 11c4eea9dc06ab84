-- Linked downstream applications (behaviour §7.6): registered applications, one link record per
-- linked user, and the durable outbound queue the provisioning worker drains.

CREATE TABLE apps (
    name         TEXT PRIMARY KEY NOT NULL,
    url          TEXT NOT NULL,        -- SCIM base URL of the downstream application
    token_file   TEXT NOT NULL,        -- secret file read at run time; the token is not stored here
    licence      TEXT,                 -- entitlement value given to unblocked accounts (NULL: none)
    groups       TEXT,                 -- comma-separated lower-cased group displayNames; NULL: all users
    purge_policy TEXT NOT NULL,        -- delete | block: what a purge does to the downstream account
    rate_per_sec REAL,                 -- most requests a second to this application (NULL: unlimited)
    created      TEXT NOT NULL,
    cursor       INTEGER NOT NULL,     -- last outbound_events.seq this application has processed
    last_error   TEXT,                 -- why the queue is held (downstream unreachable, 5xx, 429…)
    last_error_at TEXT
);

CREATE TABLE app_links (
    app           TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
    user_id       TEXT NOT NULL,       -- no foreign key: a link outlives a purged user (policy block)
    user_name     TEXT NOT NULL,
    immutable_id  TEXT NOT NULL,       -- sent as the downstream externalId; never changes for a link
    downstream_id TEXT,                -- the downstream account's id (NULL while failed)
    state         TEXT NOT NULL,       -- linked | blocked | failed
    last_error    TEXT,
    last_push     TEXT,
    PRIMARY KEY (app, user_id)
);
CREATE INDEX app_links_downstream ON app_links (app, downstream_id);

-- The queue: a row per change of a user, in commit order (AUTOINCREMENT: a sequence number is
-- never reused after the rows before it are deleted). `app` NULL concerns every application;
-- a backfill for a newly added application names it. The worker reads the user's current row
-- (level-triggered), so a row needs no payload.
CREATE TABLE outbound_events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    app     TEXT
);

CREATE TRIGGER users_outbound_insert AFTER INSERT ON users BEGIN
    INSERT INTO outbound_events (user_id) VALUES (NEW.id);
END;

-- Only the columns that matter downstream (a password change must not push), and only when a
-- value really changed (the store rewrites every column on update).
CREATE TRIGGER users_outbound_update
AFTER UPDATE OF user_name, external_id, active, state, resource ON users
WHEN OLD.user_name IS NOT NEW.user_name OR OLD.external_id IS NOT NEW.external_id
  OR OLD.active IS NOT NEW.active OR OLD.state IS NOT NEW.state
  OR OLD.resource IS NOT NEW.resource
BEGIN
    INSERT INTO outbound_events (user_id) VALUES (NEW.id);
END;

CREATE TRIGGER users_outbound_delete AFTER DELETE ON users BEGIN
    INSERT INTO outbound_events (user_id) VALUES (OLD.id);
END;

-- Group membership decides which users an application with a group scope links.
CREATE TRIGGER group_members_outbound_insert AFTER INSERT ON group_members
WHEN NEW.member_type = 'User' BEGIN
    INSERT INTO outbound_events (user_id) VALUES (NEW.member_id);
END;

CREATE TRIGGER group_members_outbound_delete AFTER DELETE ON group_members
WHEN OLD.member_type = 'User' BEGIN
    INSERT INTO outbound_events (user_id) VALUES (OLD.member_id);
END;
