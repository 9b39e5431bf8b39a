-- Gig'MCP store, schema 1 (SQLite).
-- Conventions: STRICT tables; timestamps are INTEGER microseconds since the Unix epoch (UTC);
-- JSON columns are TEXT checked with json_valid; secrets exist only as vault ciphertext and
-- tokens only as hashes. Keep in step with migrations/postgres/0001_initial.sql.

CREATE TABLE servers (
    name           TEXT    NOT NULL PRIMARY KEY,
    image_ref      TEXT    NOT NULL,
    version        TEXT    NOT NULL,
    image_digest   TEXT    NOT NULL,
    extracted_path TEXT,
    manifest       TEXT    NOT NULL CHECK (json_valid(manifest)),
    state          TEXT    NOT NULL CHECK (state IN ('installing', 'installed', 'failed', 'removing')),
    installed_at   INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE users (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    subject      TEXT    NOT NULL UNIQUE,
    email        TEXT,
    display_name TEXT,
    created_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE roles (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role    TEXT    NOT NULL,
    PRIMARY KEY (user_id, role)
) STRICT;

CREATE TABLE login_sessions (
    id_hash               TEXT    NOT NULL PRIMARY KEY,
    user_id               INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Deleting the impersonated user ends the session rather than silently reverting it.
    impersonating_user_id INTEGER REFERENCES users (id) ON DELETE CASCADE,
    created_at            INTEGER NOT NULL,
    expires_at            INTEGER NOT NULL
) STRICT;
CREATE INDEX login_sessions_user_id ON login_sessions (user_id);
CREATE INDEX login_sessions_impersonating_user_id ON login_sessions (impersonating_user_id);
CREATE INDEX login_sessions_expires_at ON login_sessions (expires_at);

CREATE TABLE profiles (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    tool_filter TEXT    NOT NULL CHECK (json_valid(tool_filter)),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (user_id, name)
) STRICT;

CREATE TABLE profile_tokens (
    token_hash   TEXT    NOT NULL PRIMARY KEY,
    profile_id   INTEGER NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
) STRICT;
CREATE INDEX profile_tokens_profile_id ON profile_tokens (profile_id);

-- `server` is a plain column: credentials may be declared before the server is installed.
CREATE TABLE credentials (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    server      TEXT    NOT NULL,
    user_id     INTEGER REFERENCES users (id) ON DELETE CASCADE,
    profile_id  INTEGER REFERENCES profiles (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    key_id      TEXT    NOT NULL,
    wrapped_dek BLOB    NOT NULL,
    ciphertext  BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
-- NULL scope members must collide (a plain UNIQUE treats NULLs as distinct). AUTOINCREMENT ids
-- start at 1, so 0 never names a real user or profile.
CREATE UNIQUE INDEX credentials_scope_name
    ON credentials (server, ifnull(user_id, 0), ifnull(profile_id, 0), name);
CREATE INDEX credentials_user_id ON credentials (user_id);
CREATE INDEX credentials_profile_id ON credentials (profile_id);

CREATE TABLE vault_meta (
    id                 INTEGER PRIMARY KEY CHECK (id = 1),
    key_id             TEXT    NOT NULL,
    check_value        BLOB    NOT NULL,
    rotating_to_key_id TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
) STRICT;

CREATE TABLE tool_fingerprints (
    server              TEXT    NOT NULL,
    tool                TEXT    NOT NULL,
    sha256              TEXT    NOT NULL,
    first_seen          INTEGER NOT NULL,
    approved_at         INTEGER,
    pending_fingerprint TEXT,
    PRIMARY KEY (server, tool)
) STRICT;

CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT    NOT NULL,
    action TEXT    NOT NULL,
    target TEXT    NOT NULL,
    result TEXT    NOT NULL,
    detail TEXT    NOT NULL CHECK (json_valid(detail))
) STRICT;
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
