#!/usr/bin/env bash
# `make run`: start the gateway on embedded defaults — data under ./data, echo-mcp as the one
# backend, and a freshly generated bearer token printed once. Any GIG_* variable you set wins.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}/debug"

export GIG_DATA_DIR="${GIG_DATA_DIR:-./data}"
export GIG_LISTEN="${GIG_LISTEN:-127.0.0.1:8080}"
mkdir -p "$GIG_DATA_DIR"
chmod 700 "$GIG_DATA_DIR"

if [ -z "${GIG_SERVERS_FILE:-}" ]; then
  export GIG_SERVERS_FILE="$GIG_DATA_DIR/servers.json"
  printf '{"mcpServers": {"echo": {"command": "%s"}}}\n' "$(pwd)/$target/echo-mcp" >"$GIG_SERVERS_FILE"
fi

# A dev master key, kept (mode 0600) so secrets stored in one run open in the next.
# Production keeps GIG_MASTER_KEY in a secret manager, never next to the database.
if [ -z "${GIG_MASTER_KEY:-}" ]; then
  key_file="$GIG_DATA_DIR/dev-master-key"
  if [ ! -s "$key_file" ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$key_file")
  fi
  GIG_MASTER_KEY="$(cat "$key_file")"
  export GIG_MASTER_KEY
fi

if [ -z "${GIG_BEARER_TOKEN:-}" ]; then
  GIG_BEARER_TOKEN="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  export GIG_BEARER_TOKEN
  generated=1
fi

cat <<MSG
Gig'MCP dev gateway
  endpoint : http://$GIG_LISTEN/mcp   (Streamable HTTP; health: /healthz, /readyz)
  backends : $GIG_SERVERS_FILE
  store    : ${GIG_DATABASE_URL:-sqlite://$GIG_DATA_DIR/gigmcp.db}
MSG
if [ -n "${generated:-}" ]; then
  cat <<MSG
  token    : $GIG_BEARER_TOKEN   (generated for this run; shown only here)

Connect a client, for example:
  claude mcp add --transport http gigmcp http://$GIG_LISTEN/mcp --header "Authorization: Bearer $GIG_BEARER_TOKEN"
  curl -s http://$GIG_LISTEN/mcp -H "Authorization: Bearer $GIG_BEARER_TOKEN" \\
       -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \\
       -H 'MCP-Protocol-Version: 2026-07-28' -H 'Mcp-Method: server/discover' \\
       -d '{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"curl","version":"0"},"io.modelcontextprotocol/clientCapabilities":{}}}}'
MSG
fi
echo
exec "$target/gigmcp" serve
