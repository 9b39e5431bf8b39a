-- Gig'MCP store, schema 1 (PostgreSQL >= 15, for UNIQUE NULLS NOT DISTINCT).
-- Conventions: timestamps are TIMESTAMPTZ; JSON columns are JSONB; secrets exist only as vault
-- ciphertext and tokens only as hashes. Keep in step with migrations/sqlite/0001_initial.sql.

CREATE TABLE servers (
    name           TEXT        NOT NULL PRIMARY KEY,
    image_ref      TEXT        NOT NULL,
    version        TEXT        NOT NULL,
    image_digest   TEXT        NOT NULL,
    extracted_path TEXT,
    manifest       JSONB       NOT NULL,
    state          TEXT        NOT NULL CHECK (state IN ('installing', 'installed', 'failed', 'removing')),
    installed_at   TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE users (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject      TEXT        NOT NULL UNIQUE,
    email        TEXT,
    display_name TEXT,
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE roles (
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role    TEXT   NOT NULL,
    PRIMARY KEY (user_id, role)
);

CREATE TABLE login_sessions (
    id_hash               TEXT        NOT NULL PRIMARY KEY,
    user_id               BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Deleting the impersonated user ends the session rather than silently reverting it.
    impersonating_user_id BIGINT REFERENCES users (id) ON DELETE CASCADE,
    created_at            TIMESTAMPTZ NOT NULL,
    expires_at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX login_sessions_user_id ON login_sessions (user_id);
CREATE INDEX login_sessions_impersonating_user_id ON login_sessions (impersonating_user_id);
CREATE INDEX login_sessions_expires_at ON login_sessions (expires_at);

CREATE TABLE profiles (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        TEXT        NOT NULL,
    tool_filter JSONB       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (user_id, name)
);

CREATE TABLE profile_tokens (
    token_hash   TEXT        NOT NULL PRIMARY KEY,
    profile_id   BIGINT      NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX profile_tokens_profile_id ON profile_tokens (profile_id);

-- `server` is a plain column: credentials may be declared before the server is installed.
CREATE TABLE credentials (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server      TEXT        NOT NULL,
    user_id     BIGINT REFERENCES users (id) ON DELETE CASCADE,
    profile_id  BIGINT REFERENCES profiles (id) ON DELETE CASCADE,
    name        TEXT        NOT NULL,
    key_id      TEXT        NOT NULL,
    wrapped_dek BYTEA       NOT NULL,
    ciphertext  BYTEA       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    -- NULL scope members must collide (a plain UNIQUE treats NULLs as distinct).
    CONSTRAINT credentials_scope_name UNIQUE NULLS NOT DISTINCT (server, user_id, profile_id, name)
);
CREATE INDEX credentials_user_id ON credentials (user_id);
CREATE INDEX credentials_profile_id ON credentials (profile_id);

CREATE TABLE vault_meta (
    id                 INTEGER     PRIMARY KEY CHECK (id = 1),
    key_id             TEXT        NOT NULL,
    check_value        BYTEA       NOT NULL,
    rotating_to_key_id TEXT,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);

CREATE TABLE tool_fingerprints (
    server              TEXT        NOT NULL,
    tool                TEXT        NOT NULL,
    sha256              TEXT        NOT NULL,
    first_seen          TIMESTAMPTZ NOT NULL,
    approved_at         TIMESTAMPTZ,
    pending_fingerprint TEXT,
    PRIMARY KEY (server, tool)
);

CREATE TABLE audit_log (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     TIMESTAMPTZ NOT NULL,
    actor  TEXT        NOT NULL,
    action TEXT        NOT NULL,
    target TEXT        NOT NULL,
    result TEXT        NOT NULL,
    detail JSONB       NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
