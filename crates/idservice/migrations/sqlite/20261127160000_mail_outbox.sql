-- Sign-in, password reset and email (behaviour §7.4, 7.5). Kept in tables of their own, never as
-- updates of the `users` row, so that triggers on `users` (downstream provisioning) see only
-- changes of the user itself. Rows go away with the user (purge) through the foreign keys.

-- Per-user sign-in state: consecutive failures, lockout, and the password's age.
CREATE TABLE account_state (
    user_id            TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    failures           INTEGER NOT NULL DEFAULT 0, -- consecutive failed sign-ins
    locked_until       TEXT,                       -- NULL: not locked
    password_set_at    TEXT,                       -- NULL: unknown (set before this table)
    expiry_notified_at TEXT                        -- "password has expired" already sent
);

-- Password reset links: only the SHA-256 of the secret is stored; single use, time-limited.
CREATE TABLE reset_tokens (
    hash    TEXT PRIMARY KEY NOT NULL,            -- hex SHA-256 of the secret in the link
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created TEXT NOT NULL,
    expires TEXT NOT NULL,
    used    TEXT                                  -- NULL: not used yet
);
CREATE INDEX reset_tokens_user ON reset_tokens (user_id);

-- Token expiry warnings already sent (30/14/7/1 days before), so each is sent once.
CREATE TABLE token_expiry_warnings (
    token_id TEXT NOT NULL,
    days     INTEGER NOT NULL,
    sent     TEXT NOT NULL,
    PRIMARY KEY (token_id, days)
) WITHOUT ROWID;

-- The durable outbox: one row per recipient, so a permanently rejected address is marked
-- failed without holding back the others. The body (it may carry a reset link) is cleared
-- once the row is sent or has failed for good.
CREATE TABLE mail_outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL,
    recipient    TEXT NOT NULL,
    subject      TEXT NOT NULL,
    body         TEXT NOT NULL,
    created      TEXT NOT NULL,
    status       TEXT NOT NULL,                   -- queued | sent | failed
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt TEXT NOT NULL,
    last_error   TEXT,
    done         TEXT                             -- when sent or given up
);
CREATE INDEX mail_outbox_due ON mail_outbox (status, next_attempt);
