-- Gig'MCP store, schema 6 (PostgreSQL): each installed server records the index version it
-- came from, so an install verified against an older index can never overwrite one from a
-- newer index (two installs racing across processes). Keep in step with
-- sqlite/0006_server_index_version.sql.

ALTER TABLE servers ADD COLUMN index_version BIGINT NOT NULL DEFAULT 0;
