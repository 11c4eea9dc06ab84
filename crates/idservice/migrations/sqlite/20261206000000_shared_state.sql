-- State that several nodes must share (PostgreSQL) is kept in the database on both engines,
-- so that there is one code path: sign-in sessions, rate-limit counters, and claims (leases)
-- on queued email.

-- Signed-in sessions, keyed by the SHA-256 of the cookie value (no usable secret is stored).
CREATE TABLE web_sessions (
    hash      TEXT PRIMARY KEY NOT NULL,
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_name TEXT NOT NULL,
    expires   TEXT NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);
CREATE INDEX web_sessions_expires ON web_sessions (expires);

-- Sign-in and reset request counters: `hits` requests since `window_start` (one minute).
CREATE TABLE rate_limits (
    key          TEXT PRIMARY KEY NOT NULL, -- 'account:<lower-case name>' or 'address:<ip>'
    window_start TEXT NOT NULL,
    hits         INTEGER NOT NULL
);

-- A queued email is claimed by one sender until `claimed_until`; a sender that dies leaves
-- the claim to expire, and the row is then taken over.
ALTER TABLE mail_outbox ADD COLUMN claimed_until TEXT;

-- One node drains an application's queue at a time: it holds the application's lease until
-- `lease_until` and renews it with every step of the cursor; a node that dies leaves the lease
-- to run out, and another node carries on from the cursor.
ALTER TABLE apps ADD COLUMN lease_owner TEXT;
ALTER TABLE apps ADD COLUMN lease_until TEXT;
