-- The administrator's console (/admin/): its own accounts, sessions and audit log, apart from
-- the users that SCIM manages. An administrator is never a SCIM user and a user's session
-- never opens the console.

-- Console accounts. `name_lc` is the lower-cased name (names are unique ignoring case);
-- `role` is what the account may do (admin: everything; helpdesk: view, unlock, send a
-- reset email). Failures and lockout as for users' sign-ins.
CREATE TABLE admins (
    name_lc       TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'helpdesk')),
    password_hash TEXT NOT NULL,
    failures      BIGINT NOT NULL DEFAULT 0,
    locked_until  TEXT,
    created       TEXT NOT NULL
);

-- Signed-in console sessions, keyed by the SHA-256 of the cookie value. `csrf` is the token
-- every form of the session carries; `expires` moves forward with each request (idle expiry).
CREATE TABLE admin_sessions (
    hash     TEXT PRIMARY KEY NOT NULL,
    admin_lc TEXT NOT NULL REFERENCES admins (name_lc) ON DELETE CASCADE,
    csrf     TEXT NOT NULL,
    created  TEXT NOT NULL,
    expires  TEXT NOT NULL
);
CREATE INDEX admin_sessions_admin ON admin_sessions (admin_lc);
CREATE INDEX admin_sessions_expires ON admin_sessions (expires);

-- Every administrator action: who, what, on which object, from which address, when.
CREATE TABLE admin_audit (
    seq     BIGSERIAL PRIMARY KEY,
    at      TEXT NOT NULL,
    admin   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT,
    detail  TEXT,
    address TEXT
);
CREATE INDEX admin_audit_at ON admin_audit (at);

-- The console's prefix search on users (store::console::users_page compares exactly these
-- expressions, in byte order: COLLATE "C"): userName, externalId, displayName and the first
-- email address, the last two lower-cased.
CREATE INDEX users_user_name_search ON users (user_name_lc COLLATE "C");
CREATE INDEX users_external_id_search ON users (external_id COLLATE "C");
CREATE INDEX users_display_name_search ON users ((lower(resource::jsonb ->> 'displayName')) COLLATE "C");
CREATE INDEX users_email_search ON users ((lower(resource::jsonb #>> '{emails,0,value}')) COLLATE "C");
CREATE INDEX groups_display_name_search ON groups (display_name_lc COLLATE "C");

-- Run reports of dirsync agents (POST /scim/v2/DirsyncRuns; scim::run_report): one row per
-- run, kept for the console's runs page. `counts` and `failures` are the report's JSON.
CREATE TABLE sync_runs (
    seq       BIGSERIAL PRIMARY KEY,
    received  TEXT NOT NULL,
    instance  TEXT NOT NULL,
    run_id    TEXT NOT NULL,
    started   TEXT NOT NULL,
    ended     TEXT NOT NULL,
    mode      TEXT NOT NULL,
    dry_run   BIGINT NOT NULL,
    exit_code BIGINT NOT NULL,
    reason    TEXT,
    counts    TEXT NOT NULL,
    failures  TEXT NOT NULL,
    failed_count BIGINT NOT NULL,
    expected_interval_seconds BIGINT
);
CREATE INDEX sync_runs_instance ON sync_runs (instance, seq);
