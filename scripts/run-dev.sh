#!/usr/bin/env bash
# `make run`: what the quickstart does, without Docker or internet. The echo and fetch servers
# are packed into OCI images in a local image layout, a dev key signs a local index naming them by
# digest, and the gateway starts with GIG_INSTALL=echo: signed index -> image verified by digest ->
# entrypoint extracted -> recorded -> started in the sandbox -> `echo_echo` on /mcp. A bearer
# token is generated and printed once. Any GIG_* variable you set wins.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}/debug"

export GIG_DATA_DIR="${GIG_DATA_DIR:-./data}"
export GIG_LISTEN="${GIG_LISTEN:-127.0.0.1:8080}"
# Prometheus scrapes its own listener (no token); GIG_METRICS_LISTEN= (empty) turns it off.
export GIG_METRICS_LISTEN="${GIG_METRICS_LISTEN-127.0.0.1:9464}"
mkdir -p "$GIG_DATA_DIR"
# Not listable by others; `public/` (extracted images) must be reachable by bubblewrap's user.
chmod 711 "$GIG_DATA_DIR"
dev="$GIG_DATA_DIR/dev-index"
mkdir -p "$dev"
chmod 700 "$dev"

if [ -z "${GIG_BOOTSTRAP:-}" ]; then
  GIG_BOOTSTRAP="$(pwd)/target/static/$(rustc -vV | sed -n 's/^host: //p')/release/bootstrap"
  export GIG_BOOTSTRAP
fi

if [ -z "${GIG_INDEX_URL:-}" ]; then
  # The dev signing key: generated once, mode 0600, its public half kept beside it.
  if [ ! -s "$dev/index.key" ]; then
    # Its "give the line above to GIG_INDEX_PUBKEYS" is done here (the key is printed below).
    "$target/registryctl" keygen --out "$dev/index.key" 2>/dev/null \
      | grep -o 'ed25519:[A-Za-z0-9+/=]*' >"$dev/index.pub"
  fi
  layout="$dev/layout"
  index="$dev/index.json"
  rm -f "$index"
  for server in echo fetch; do
    # Debug info is most of a debug build's size: pack a stripped copy.
    objcopy --strip-debug "$target/$server-mcp" "$dev/$server-mcp"
    digest="$("$target/gig-devimage" --file "$dev/$server-mcp" --name "$server-mcp" --layout "$layout")"
    "$target/registryctl" add --index "$index" --name "$server" --version 0.1.0 \
      --image "localhost/gigmcp/$server-mcp@$digest" --entrypoint "/srv/$server-mcp" \
      --description "Gig'MCP's $server test server" >/dev/null
  done
  "$target/registryctl" sign --index "$index" --key "$dev/index.key" --expires-in 30d \
    --out "$dev/index.signed.json" >/dev/null
  export GIG_INDEX_URL="file://$(cd "$dev" && pwd)/index.signed.json"
  export GIG_INDEX_PUBKEYS="${GIG_INDEX_PUBKEYS:-$(cat "$dev/index.pub")}"
  export GIG_OCI_LAYOUT="${GIG_OCI_LAYOUT:-$layout}"
  export GIG_INSTALL="${GIG_INSTALL:-echo}"
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
  master_key_from="\$(cat '$key_file')"
fi

if [ -z "${GIG_BEARER_TOKEN:-}" ]; then
  GIG_BEARER_TOKEN="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  export GIG_BEARER_TOKEN
  generated=1
fi

metrics_at="(off)"
[ -n "${GIG_METRICS_LISTEN:-}" ] && metrics_at="http://$GIG_METRICS_LISTEN/metrics"
cat <<MSG
Gig'MCP dev gateway
  endpoint : http://$GIG_LISTEN/mcp   (Streamable HTTP; health: /healthz, /readyz)
  installs : ${GIG_INSTALL:-(none)} from $GIG_INDEX_URL
  store    : ${GIG_DATABASE_URL:-sqlite://$GIG_DATA_DIR/gigmcp.db}
  metrics  : $metrics_at
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
# The operator CLI (`gigmcp secret|install|list|tools`) reads the same settings: the lines to
# paste into another shell, so it works against this gateway's store and dev index.
cat <<MSG

Operator CLI, in another shell:
  export GIG_DATA_DIR='$GIG_DATA_DIR' GIG_MASTER_KEY="${master_key_from:-(the key you set)}"
  export GIG_INDEX_URL='$GIG_INDEX_URL' GIG_INDEX_PUBKEYS='$GIG_INDEX_PUBKEYS'${GIG_OCI_LAYOUT:+ GIG_OCI_LAYOUT='$GIG_OCI_LAYOUT'}
  $target/gigmcp list            # installed servers; also: install fetch, secret set fetch api-key, tools
MSG
echo
exec "$target/gigmcp" serve
