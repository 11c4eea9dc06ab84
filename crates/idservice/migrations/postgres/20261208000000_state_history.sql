-- Every change of a user's state, recorded by the database itself (a trigger), whatever
-- wrote it: a SCIM request, a Bulk operation, an administrator's command or a purge. It is
-- the service's own account of who was ever disabled or pending deletion, independent of
-- any client's word. Users created active are not recorded (most users; it keeps bulk
-- ingest at one write per user); a user created disabled is. As on SQLite.
CREATE TABLE user_state_history (
    seq         BIGSERIAL PRIMARY KEY,
    user_id     TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    external_id TEXT,
    from_state  TEXT,                -- NULL: the user was created in `to_state`
    to_state    TEXT NOT NULL,       -- active | disabled | pendingDeletion | purged
    at          TEXT NOT NULL
);
CREATE INDEX user_state_history_user ON user_state_history (user_id);

CREATE FUNCTION user_state_history_record() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO user_state_history (user_id, user_name, external_id, from_state, to_state, at)
        VALUES (OLD.id, OLD.user_name, OLD.external_id, OLD.state, 'purged',
                to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'));
        RETURN OLD;
    ELSIF TG_OP = 'INSERT' THEN
        IF NEW.state <> 'active' THEN
            INSERT INTO user_state_history (user_id, user_name, external_id, from_state, to_state, at)
            VALUES (NEW.id, NEW.user_name, NEW.external_id, NULL, NEW.state, NEW.last_modified);
        END IF;
        RETURN NEW;
    ELSIF NEW.state IS DISTINCT FROM OLD.state THEN
        INSERT INTO user_state_history (user_id, user_name, external_id, from_state, to_state, at)
        VALUES (NEW.id, NEW.user_name, NEW.external_id, OLD.state, NEW.state, NEW.last_modified);
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER user_state_history AFTER INSERT OR UPDATE OF state OR DELETE ON users
FOR EACH ROW EXECUTE FUNCTION user_state_history_record();
