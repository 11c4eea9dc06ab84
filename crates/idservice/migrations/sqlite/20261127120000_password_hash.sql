-- Passwords (RFC 7643 writeOnly, returned never) are kept only as a salted argon2id hash in
-- their own column, never inside the `resource` JSON. Earlier versions kept a PATCHed or
-- POSTed password in clear inside `resource`; it cannot be hashed here, so it is dropped.
ALTER TABLE users ADD COLUMN password_hash TEXT;
UPDATE users SET resource = json_remove(resource, '$.password')
    WHERE json_type(resource, '$.password') IS NOT NULL;
