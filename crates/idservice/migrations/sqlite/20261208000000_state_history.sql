-- Every change of a user's state, recorded by the database itself (triggers), whatever
-- wrote it: a SCIM request, a Bulk operation, an administrator's command or a purge. It is
-- the service's own account of who was ever disabled or pending deletion, independent of
-- any client's word. Users created active are not recorded (most users; it keeps bulk
-- ingest at one write per user); a user created disabled is.
CREATE TABLE user_state_history (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    external_id TEXT,
    from_state  TEXT,                -- NULL: the user was created in `to_state`
    to_state    TEXT NOT NULL,       -- active | disabled | pendingDeletion | purged
    at          TEXT NOT NULL
);
CREATE INDEX user_state_history_user ON user_state_history (user_id);

CREATE TRIGGER user_state_history_insert AFTER INSERT ON users
WHEN NEW.state <> 'active'
BEGIN
    INSERT INTO user_state_history (user_id, user_name, external_id, from_state, to_state, at)
    VALUES (NEW.id, NEW.user_name, NEW.external_id, NULL, NEW.state, NEW.last_modified);
END;

CREATE TRIGGER user_state_history_update AFTER UPDATE OF state ON users
WHEN OLD.state <> NEW.state
BEGIN
    INSERT INTO user_state_history (user_id, user_name, external_id, from_state, to_state, at)
    VALUES (NEW.id, NEW.user_name, NEW.external_id, OLD.state, NEW.state, NEW.last_modified);
END;

CREATE TRIGGER user_state_history_delete AFTER DELETE ON users
BEGIN
    INSERT INTO user_state_history (user_id, user_name, external_id, from_state, to_state, at)
    VALUES (OLD.id, OLD.user_name, OLD.external_id, OLD.state, 'purged',
            strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END;
