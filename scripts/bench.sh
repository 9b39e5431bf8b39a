#!/usr/bin/env bash
# `make bench`: tools/call on echo-mcp, in one run, at concurrency 1 and 32:
#   (a) direct   — gig-bench's rmcp client over stdio to echo-mcp;
#   (b) gateway  — wrk → /mcp (stateless 2026-07-28 POSTs) → stdio → echo-mcp;
#   (c) ceiling  — wrk → a canned HTTP responder (what wrk itself can do on this machine).
# Every response is checked (a: result text; b, c: status + body in the wrk script).
# Env: SECONDS_PER_RUN (default 10). Results: a table on stdout and .bench/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${SECONDS_PER_RUN:-10}"
out=.bench
mkdir -p "$out"
command -v wrk >/dev/null || { echo "wrk is missing: run make peers (installs it as root)" >&2; exit 1; }

cargo build --quiet --release -p gigmcp -p echo-mcp -p gig-bench
here="$(pwd)"
pg_dir="$(mktemp -d /tmp/gig-bench-pg.XXXXXX)"
chmod 755 "$pg_dir"
bin=target/release

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  "$here/scripts/pg-test.sh" stop "$pg_dir/pg" >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
trap cleanup EXIT

port_of() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 100); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not up: $1" >&2; return 1; }

# Gateway on echo-mcp.
token="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
gw_port="$(port_of)"
printf '{"mcpServers": {"echo": {"command": "%s"}}}\n' "$(pwd)/$bin/echo-mcp" >"$out/servers.json"
GIG_MASTER_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
GIG_BEARER_TOKEN="$token" GIG_LISTEN="127.0.0.1:$gw_port" GIG_DATA_DIR="$out/data" \
  GIG_SERVERS_FILE="$out/servers.json" GIG_LOG=warn "$bin/gigmcp" >"$out/gateway.log" 2>&1 &
pids+=($!)
wait_up "http://127.0.0.1:$gw_port/readyz"

# Canned responder.
"$bin/gig-bench" canned >"$out/canned.addr" &
pids+=($!)
for _ in $(seq 100); do [ -s "$out/canned.addr" ] && break; sleep 0.1; done
canned="$(head -1 "$out/canned.addr")"

run_wrk() { # url concurrency
  local threads=$(( $2 < 2 ? 1 : 2 ))
  TOKEN="$token" wrk -t"$threads" -c"$2" -d"${secs}s" -s scripts/bench/mcp-call.lua "$1" | tail -1
}

results=()
for c in 1 32; do
  echo "concurrency $c: direct..." >&2
  d="$("$bin/gig-bench" direct --server "$bin/echo-mcp" --concurrency "$c" --seconds "$secs")"
  echo "concurrency $c: gateway..." >&2
  g="$(run_wrk "http://127.0.0.1:$gw_port/mcp" "$c")"
  echo "concurrency $c: ceiling..." >&2
  k="$(run_wrk "http://$canned/mcp" "$c")"
  results+=("{\"concurrency\":$c,\"direct\":$d,\"gateway\":$g,\"ceiling\":$k}")
done
printf '[%s]\n' "$(IFS=,; echo "${results[*]}")" >"$out/results.json"

python3 - "$out/results.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
print(f"{'conc':>4} {'path':<8} {'calls/s':>10} {'p50 µs':>8} {'p99 µs':>8} {'bad':>5}")
for r in rows:
    for path in ("direct", "gateway", "ceiling"):
        m = r[path]
        print(f"{r['concurrency']:>4} {path:<8} {m['calls_per_s']:>10.0f} {m['p50_us']:>8} {m['p99_us']:>8} {m['bad']:>5}")
bad = sum(r[p]["bad"] + r[p].get("socket_errors", 0) for r in rows for p in ("direct", "gateway", "ceiling"))
one = next(r for r in rows if r["concurrency"] == 1)
many = next(r for r in rows if r["concurrency"] == 32)
print()
print(f"added p50 latency at c=1 (gateway - direct): {one['gateway']['p50_us'] - one['direct']['p50_us']} µs"
      f"  (wrk's own p50 against the canned responder: {one['ceiling']['p50_us']} µs)")
print(f"gateway throughput at c=32 / generator ceiling: {many['gateway']['calls_per_s'] / many['ceiling']['calls_per_s']:.1%}")
print(f"gateway throughput at c=32 / direct stdio:      {many['gateway']['calls_per_s'] / many['direct']['calls_per_s']:.1%}")
if bad:
    sys.exit(f"{bad} responses failed their check")
PY

# Vault and store: seal/open per secret, and store operations per second on both backends.
echo "vault and store..." >&2
v="$("$bin/gig-bench" vault)"
rm -f "$out"/store.db*
sq="$("$bin/gig-bench" store --url "sqlite://$(pwd)/$out/store.db" --seconds 3)"
pg_url="$(scripts/pg-test.sh start "$pg_dir/pg" "$(port_of)")"
# The throwaway cluster runs with fsync=off (as in the tests); say so next to the figures.
pg="$("$bin/gig-bench" store --url "$pg_url" --seconds 3)"
printf '{"vault":%s,"sqlite":%s,"postgres":%s}\n' "$v" "$sq" "$pg" >"$out/store-results.json"
python3 - "$out/store-results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print()
print(f"vault: seal {r['vault']['seal_us']:.1f} µs, open {r['vault']['open_us']:.1f} µs per 64-byte secret")
print(f"{'store op/s':<22} {'SQLite':>10} {'PostgreSQL':>12}")
for key, label in [("insert_credential_per_s", "insert credential"), ("read_servers_per_s", "read servers (20)"), ("append_audit_per_s", "append audit")]:
    print(f"{label:<22} {r['sqlite'][key]:>10.0f} {r['postgres'][key]:>12.0f}")
print("(PostgreSQL: throwaway loopback cluster with fsync=off; SQLite: WAL, synchronous=NORMAL defaults of sqlx)")
PY
