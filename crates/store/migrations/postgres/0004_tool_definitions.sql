-- Gig'MCP store, schema 4 (PostgreSQL): the definitions behind tool fingerprints, so a pending
-- change can be shown as a diff before it is approved. Informational: the fingerprint (sha256)
-- stays the only thing trust is decided on. Keep in step with sqlite/0004_tool_definitions.sql.

ALTER TABLE tool_fingerprints ADD COLUMN definition TEXT;
ALTER TABLE tool_fingerprints ADD COLUMN pending_definition TEXT;
