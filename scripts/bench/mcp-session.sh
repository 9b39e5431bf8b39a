#!/usr/bin/env bash
# mcp-session.sh URL COUNT — open COUNT initialize-era MCP sessions on URL (initialize, then
# notifications/initialized) and print two lines: the negotiated protocol version, then the
# Mcp-Session-Id values joined by commas. Env: TOKEN (bearer; optional).
set -euo pipefail
url="$1"; count="${2:-1}"
auth=(); [ -n "${TOKEN:-}" ] && auth=(-H "Authorization: Bearer $TOKEN")
hdrs="$(mktemp)"; trap 'rm -f "$hdrs"' EXIT
ids=(); version=
for _ in $(seq "$count"); do
  body="$(curl -sS --fail-with-body -D "$hdrs" "${auth[@]}" "$url" \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"gig-bench-wrk","version":"0"}}}')"
  id="$(tr -d '\r' <"$hdrs" | sed -n 's/^[Mm][Cc][Pp]-[Ss]ession-[Ii][Dd]: *//p' | head -1)"
  [ -n "$id" ] || { echo "no Mcp-Session-Id from $url: $body" >&2; exit 1; }
  version="$(printf '%s' "$body" | grep -o '"protocolVersion":"[^"]*"' | head -1 | cut -d'"' -f4)"
  [ -n "$version" ] || { echo "no protocolVersion in: $body" >&2; exit 1; }
  curl -sS --fail-with-body -o /dev/null "${auth[@]}" "$url" \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -H "Mcp-Session-Id: $id" -H "MCP-Protocol-Version: $version" \
    -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'
  ids+=("$id")
done
echo "$version"
(IFS=,; echo "${ids[*]}")
