-- idservice schema on PostgreSQL: the same tables and columns as on SQLite (text timestamps
-- in fixed-width UTC, JSON resources as text), so one set of statements serves both engines.
-- Hot SCIM attributes are real, indexed columns; everything else lives in `resource`.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE domains (
    name    TEXT PRIMARY KEY NOT NULL,
    created TEXT NOT NULL
);

CREATE TABLE tokens (
    id      TEXT PRIMARY KEY NOT NULL,
    hash    TEXT NOT NULL UNIQUE,
    scopes  TEXT NOT NULL,
    owner   TEXT,
    created TEXT NOT NULL,
    expires TEXT,
    revoked TEXT
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    user_name     TEXT NOT NULL,
    user_name_lc  TEXT NOT NULL,
    external_id   TEXT,
    active        BIGINT NOT NULL,     -- 0 or 1, as on SQLite
    state         TEXT NOT NULL,
    pending_since TEXT,
    created       TEXT NOT NULL,
    last_modified TEXT NOT NULL,
    version       BIGINT NOT NULL,
    resource      TEXT NOT NULL,
    password_hash TEXT
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
    version         BIGINT NOT NULL,
    resource        TEXT NOT NULL
);
CREATE UNIQUE INDEX groups_display_name_lc ON groups (display_name_lc);
CREATE UNIQUE INDEX groups_external_id ON groups (external_id);
CREATE INDEX groups_created ON groups (created);
CREATE INDEX groups_last_modified ON groups (last_modified);

CREATE TABLE group_members (
    group_id    TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    member_id   TEXT NOT NULL,
    member_type TEXT NOT NULL,
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX group_members_member ON group_members (member_id);

CREATE TABLE apps (
    name          TEXT PRIMARY KEY NOT NULL,
    url           TEXT NOT NULL,
    token_file    TEXT NOT NULL,
    licence       TEXT,
    groups        TEXT,
    purge_policy  TEXT NOT NULL,
    rate_per_sec  DOUBLE PRECISION,
    created       TEXT NOT NULL,
    cursor        BIGINT NOT NULL,
    last_error    TEXT,
    last_error_at TEXT,
    lease_owner   TEXT,                -- the node draining the queue (see the SQLite schema)
    lease_until   TEXT
);

CREATE TABLE app_links (
    app           TEXT NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
    user_id       TEXT NOT NULL,
    user_name     TEXT NOT NULL,
    immutable_id  TEXT NOT NULL,
    downstream_id TEXT,
    state         TEXT NOT NULL,
    last_error    TEXT,
    last_push     TEXT,
    PRIMARY KEY (app, user_id)
);
CREATE INDEX app_links_downstream ON app_links (app, downstream_id);

CREATE TABLE outbound_events (
    seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id TEXT NOT NULL,
    app     TEXT
);

-- The queue is read by sequence number, so numbers must become visible in order: a
-- transaction that queues an event holds a transaction-scoped advisory lock until it ends,
-- and a later number cannot commit before an earlier one.
CREATE FUNCTION queue_outbound(uid TEXT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7011);
    INSERT INTO outbound_events (user_id) VALUES (uid);
END $$;

CREATE FUNCTION users_outbound() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM queue_outbound(OLD.id);
    ELSIF TG_OP = 'INSERT' THEN
        PERFORM queue_outbound(NEW.id);
    ELSIF OLD.user_name IS DISTINCT FROM NEW.user_name
       OR OLD.external_id IS DISTINCT FROM NEW.external_id
       OR OLD.active IS DISTINCT FROM NEW.active
       OR OLD.state IS DISTINCT FROM NEW.state
       OR OLD.resource IS DISTINCT FROM NEW.resource THEN
        PERFORM queue_outbound(NEW.id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER users_outbound AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION users_outbound();

CREATE FUNCTION group_members_outbound() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.member_type = 'User' THEN PERFORM queue_outbound(OLD.member_id); END IF;
    ELSIF NEW.member_type = 'User' THEN
        PERFORM queue_outbound(NEW.member_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER group_members_outbound AFTER INSERT OR DELETE ON group_members
    FOR EACH ROW EXECUTE FUNCTION group_members_outbound();

CREATE TABLE account_state (
    user_id            TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    failures           BIGINT NOT NULL DEFAULT 0,
    locked_until       TEXT,
    password_set_at    TEXT,
    expiry_notified_at TEXT
);

CREATE TABLE reset_tokens (
    hash    TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created TEXT NOT NULL,
    expires TEXT NOT NULL,
    used    TEXT
);
CREATE INDEX reset_tokens_user ON reset_tokens (user_id);

CREATE TABLE token_expiry_warnings (
    token_id TEXT NOT NULL,
    days     BIGINT NOT NULL,
    sent     TEXT NOT NULL,
    PRIMARY KEY (token_id, days)
);

CREATE TABLE mail_outbox (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          TEXT NOT NULL,
    recipient     TEXT NOT NULL,
    subject       TEXT NOT NULL,
    body          TEXT NOT NULL,
    created       TEXT NOT NULL,
    status        TEXT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    next_attempt  TEXT NOT NULL,
    last_error    TEXT,
    done          TEXT,
    claimed_until TEXT
);
CREATE INDEX mail_outbox_due ON mail_outbox (status, next_attempt);

CREATE TABLE web_sessions (
    hash      TEXT PRIMARY KEY NOT NULL,
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_name TEXT NOT NULL,
    expires   TEXT NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);
CREATE INDEX web_sessions_expires ON web_sessions (expires);

CREATE TABLE rate_limits (
    key          TEXT PRIMARY KEY NOT NULL,
    window_start TEXT NOT NULL,
    hits         BIGINT NOT NULL
);

-- SQLite's JSON functions, as far as the filter translation uses them, over `text` JSON and
-- SQLite paths (`$.a`, `$."a"."b"`, `$."a"[0]`): one filter translation for both engines.
CREATE FUNCTION sqlite_json_path(p TEXT) RETURNS TEXT[] LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT COALESCE(array_agg(COALESCE(m[1], m[2], m[3]) ORDER BY n), '{}')
    FROM regexp_matches(p, '\."([^"]*)"|\.([^."\[]+)|\[([0-9]+)\]', 'g') WITH ORDINALITY AS t(m, n)
$$;

CREATE FUNCTION json_extract(doc TEXT, path TEXT) RETURNS TEXT LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE jsonb_typeof(doc::jsonb #> sqlite_json_path(path))
        WHEN 'null' THEN NULL
        ELSE doc::jsonb #>> sqlite_json_path(path) END
$$;

CREATE FUNCTION json_type(doc TEXT, path TEXT) RETURNS TEXT LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE jsonb_typeof(doc::jsonb #> sqlite_json_path(path))
        WHEN 'string' THEN 'text'
        WHEN 'boolean' THEN (doc::jsonb #>> sqlite_json_path(path))
        WHEN 'number' THEN 'real'
        ELSE jsonb_typeof(doc::jsonb #> sqlite_json_path(path)) END
$$;

CREATE FUNCTION json_array_length(doc TEXT, path TEXT) RETURNS BIGINT LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE jsonb_typeof(doc::jsonb #> sqlite_json_path(path))
        WHEN 'array' THEN jsonb_array_length(doc::jsonb #> sqlite_json_path(path))::BIGINT
        ELSE 0 END
$$;

-- The elements of the array at `path` (any other value counts as one element), as SQLite gives
-- them: strings unquoted, objects and arrays as JSON text.
CREATE FUNCTION json_each(doc TEXT, path TEXT) RETURNS TABLE (value TEXT)
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE jsonb_typeof(e) WHEN 'null' THEN NULL ELSE e #>> '{}' END
    FROM jsonb_array_elements(
        CASE WHEN doc::jsonb #> sqlite_json_path(path) IS NULL THEN '[]'::jsonb
            WHEN jsonb_typeof(doc::jsonb #> sqlite_json_path(path)) = 'array'
                THEN doc::jsonb #> sqlite_json_path(path)
            WHEN jsonb_typeof(doc::jsonb #> sqlite_json_path(path)) = 'null' THEN '[]'::jsonb
            ELSE jsonb_build_array(doc::jsonb #> sqlite_json_path(path)) END) AS e
$$;

CREATE FUNCTION json_each(doc TEXT) RETURNS TABLE (value TEXT) LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT * FROM json_each(doc, '$')
$$;
