-- Gig'MCP store, schema 5 (PostgreSQL): the gateway as an OAuth authorization server for /mcp.
-- Keep in step with sqlite/0005_oauth.sql.

-- Clients registered dynamically (RFC 7591). Clients identified by a metadata document (an
-- https client_id) are not stored: their document is fetched and cached in memory.
CREATE TABLE oauth_clients (
    client_id   TEXT        NOT NULL PRIMARY KEY,
    -- NULL: a public client; else the SHA-256 of its secret (never the secret).
    secret_hash TEXT,
    metadata    JSONB       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX oauth_clients_created_at ON oauth_clients (created_at);

-- A user's consent: this client may act as this user through this profile, for this resource
-- (audience) and scope. Revoking it ends every code and token issued under it.
CREATE TABLE oauth_grants (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    profile_id   BIGINT      NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    client_id    TEXT        NOT NULL,
    client_name  TEXT        NOT NULL,
    resource     TEXT        NOT NULL,
    scope        TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX oauth_grants_user_id ON oauth_grants (user_id);
CREATE INDEX oauth_grants_client_id ON oauth_grants (client_id);

-- Authorization codes, access tokens and refresh tokens, only as SHA-256 hashes. A code or a
-- refresh token is spent once (used_at); presenting a spent one revokes its grant.
CREATE TABLE oauth_tokens (
    token_hash     TEXT        NOT NULL PRIMARY KEY,
    grant_id       BIGINT      NOT NULL REFERENCES oauth_grants (id) ON DELETE CASCADE,
    kind           TEXT        NOT NULL CHECK (kind IN ('code', 'access', 'refresh')),
    expires_at     TIMESTAMPTZ NOT NULL,
    used_at        TIMESTAMPTZ,
    -- Codes only: the PKCE S256 challenge and the exact redirect URI of the request.
    code_challenge TEXT,
    redirect_uri   TEXT,
    CHECK ((kind = 'code') = (code_challenge IS NOT NULL AND redirect_uri IS NOT NULL))
);
CREATE INDEX oauth_tokens_grant_id ON oauth_tokens (grant_id);
CREATE INDEX oauth_tokens_expires_at ON oauth_tokens (expires_at);
