-- One downstream account belongs to one user of an application: (app, downstream_id) is
-- unique (NULLs, links without an account yet, do not collide). Should an older version
-- have linked two users to one account, every link but the first user's is marked failed
-- and loses the account, so that the administrator sees it (`idservice apps links`).
UPDATE app_links SET downstream_id = NULL, state = 'failed',
    last_error = 'this downstream account was also linked to another user; link refused'
WHERE downstream_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM app_links o
    WHERE o.app = app_links.app AND o.downstream_id = app_links.downstream_id
      AND o.user_id < app_links.user_id);
DROP INDEX app_links_downstream;
CREATE UNIQUE INDEX app_links_downstream ON app_links (app, downstream_id);
-- A SCIM write checks that no other user's link holds its immutable id.
CREATE INDEX app_links_immutable ON app_links (immutable_id);
