-- idservice schema, version 1. Hot SCIM attributes are real, indexed columns so that
-- filters on them run on indexes; everything else lives in the `resource` JSON document.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE domains (
    name    TEXT PRIMARY KEY NOT NULL, -- lower-case domain name
    created TEXT NOT NULL
);

CREATE TABLE tokens (
    id      TEXT PRIMARY KEY NOT NULL, -- short public id used by `token list/revoke`
    hash    TEXT NOT NULL UNIQUE,      -- hex SHA-256 of the secret; the secret is never stored
    scopes  TEXT NOT NULL,             -- comma-separated
    owner   TEXT,
    created TEXT NOT NULL,
    expires TEXT,                      -- NULL: never expires
    revoked TEXT                       -- NULL: not revoked
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    user_name     TEXT NOT NULL,
    user_name_lc  TEXT NOT NULL,       -- Unicode lower-case of user_name (userName is caseExact=false)
    external_id   TEXT,                -- caseExact
    active        INTEGER NOT NULL,
    state         TEXT NOT NULL,       -- active | disabled | pendingDeletion
    pending_since TEXT,
    created       TEXT NOT NULL,
    last_modified TEXT NOT NULL,
    version       INTEGER NOT NULL,
    resource      TEXT NOT NULL        -- the SCIM resource without id/meta/groups/state
);
CREATE UNIQUE INDEX users_user_name_lc ON users (user_name_lc);
CREATE UNIQUE INDEX users_external_id ON users (external_id);
CREATE INDEX users_state ON users (state);
CREATE INDEX users_active ON users (active);
CREATE INDEX users_created ON users (created);
CREATE INDEX users_last_modified ON users (last_modified);
CREATE INDEX users_pending_since ON users (pending_since) WHERE pending_since IS NOT NULL;

CREATE TABLE groups (
    id              TEXT PRIMARY KEY NOT NULL,
    display_name    TEXT NOT NULL,
    display_name_lc TEXT NOT NULL,
    external_id     TEXT,
    created         TEXT NOT NULL,
    last_modified   TEXT NOT NULL,
    version         INTEGER NOT NULL,
    resource        TEXT NOT NULL      -- the SCIM resource without id/meta/members
);
CREATE UNIQUE INDEX groups_display_name_lc ON groups (display_name_lc);
CREATE UNIQUE INDEX groups_external_id ON groups (external_id);
CREATE INDEX groups_created ON groups (created);
CREATE INDEX groups_last_modified ON groups (last_modified);

-- Group membership, relational so that a user's read-only `groups` is computed and large
-- groups are changed row by row. A member is a user or a group (member_type), so there is
-- no foreign key on member_id; the store removes rows when a member is purged.
CREATE TABLE group_members (
    group_id    TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    member_id   TEXT NOT NULL,
    member_type TEXT NOT NULL,         -- User | Group
    PRIMARY KEY (group_id, member_id)
) WITHOUT ROWID;
CREATE INDEX group_members_member ON group_members (member_id);
