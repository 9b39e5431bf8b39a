-- Gig'MCP store, schema 3 (SQLite): named, expiring profile tokens; API tokens for /api
-- automation; an audit index for filtering by actor. Keep in step with
-- migrations/postgres/0003_tokens_audit_query.sql.

ALTER TABLE profile_tokens ADD COLUMN name TEXT NOT NULL DEFAULT '';
-- NULL: the token does not expire.
ALTER TABLE profile_tokens ADD COLUMN expires_at INTEGER;

-- Bearer tokens for /api automation, stored only as hashes. `role` is the role the token acts
-- with (interpreted by the API layer); every API token expires.
CREATE TABLE api_tokens (
    token_hash   TEXT    NOT NULL PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    role         TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'member', 'viewer')),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
) STRICT;
CREATE INDEX api_tokens_user_id ON api_tokens (user_id);

-- Audit listings filtered by actor, newest first.
CREATE INDEX audit_log_actor ON audit_log (actor, id);
