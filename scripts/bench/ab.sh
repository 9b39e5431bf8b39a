#!/usr/bin/env bash
# scripts/bench/ab.sh GIGMCP_A GIGMCP_B [ROUNDS]: two gateway binaries run alternately, nothing
# else running, to tell a change's cost from this machine's run-to-run noise. Each turn starts
# one gateway (plain echo-stdio backend, no control plane) and measures with wrk for 3 s:
# stateless 2026-07-28 calls and initialize-era calls, each at c=1 and c=32 (sessions opened by
# mcp-session.sh). One JSON line per cell: round, binary, cell, wrk's figures. Needs
# `cargo build --release -p echo-stdio` and wrk (make peers).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 2 ] || { echo "usage: $0 GIGMCP_A GIGMCP_B [ROUNDS]" >&2; exit 2; }
echo_stdio="$PWD/target/release/echo-stdio"
[ -x "$echo_stdio" ] || { echo "build it first: cargo build --release -p echo-stdio" >&2; exit 1; }
pid="" work=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  [ -n "$work" ] && rm -rf "$work"
  pid="" work=""
}
trap cleanup EXIT
cell() { # round binary name wrk-args...
  local round="$1" binary="$2" name="$3"; shift 3
  echo "{\"round\":$round,\"binary\":\"$binary\",\"cell\":\"$name\",\"wrk\":$(env "$@" | tail -1)}"
}
for round in $(seq "${3:-3}"); do
  for g in "$1" "$2"; do
    work="$(mktemp -d /tmp/gig-ab.XXXXXX)"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    token="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    printf '{"mcpServers": {"echo": {"command": "%s"}}}\n' "$echo_stdio" >"$work/servers.json"
    GIG_MASTER_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" GIG_BEARER_TOKEN="$token" \
      GIG_LISTEN="127.0.0.1:$port" GIG_DATA_DIR="$work/data" GIG_SERVERS_FILE="$work/servers.json" \
      GIG_LOG=warn "$g" >"$work/gateway.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
    gw="http://127.0.0.1:$port/mcp"
    for c in 1 32; do
      cell "$round" "$g" "2026-07-28 c=$c" TOKEN="$token" ARG=text \
        wrk -t"$(( c < 2 ? 1 : 2 ))" -c"$c" -d3s -s scripts/bench/mcp-call.lua "$gw"
    done
    for c in 1 32; do
      sessions="$(TOKEN="$token" scripts/bench/mcp-session.sh "$gw" "$c")"
      cell "$round" "$g" "initialize c=$c" TOKEN="$token" ARG=text SESSIONS="$(sed -n 2p <<<"$sessions")" \
        PROTOCOL="$(sed -n 1p <<<"$sessions")" wrk -t"$(( c < 2 ? 1 : 2 ))" -c"$c" -d3s \
        -s scripts/bench/mcp-session-call.lua "$gw"
    done
    cleanup
  done
done
