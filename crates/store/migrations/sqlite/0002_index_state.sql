-- The newest signed index the gateway accepted: an index older than this, or a different
-- document under the same version, is refused (rollback and freeze/equivocation protection).
CREATE TABLE index_state (
    id             INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    version        INTEGER NOT NULL CHECK (version >= 0),
    content_sha256 TEXT    NOT NULL,
    accepted_at    INTEGER NOT NULL
) STRICT;
