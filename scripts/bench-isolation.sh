#!/usr/bin/env bash
# `make bench`, second half: what isolation and installs cost, each against its baseline in
# the same run.
#   1. sandbox start-up: plain child vs sandbox vs sandbox + veth + proxy (50 starts each),
#      and the footprint of 20 idle sandboxed servers;
#   2. the egress proxy: HTTPS through the proxy vs straight to the same upstream (c=1, c=32),
#      and leaf-certificate minting;
#   3. netmgr: attach (veth in the netns + addresses + firewall) and teardown;
#   4. installs: a cached vs uncached image, and cold GIG_INSTALL boot-to-ready with 1 and 20
#      servers against a loopback registry.
# Needs root (bubblewrap, netns, nftables), docker-registry (make peers installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
here="$(pwd)"
out=.bench
mkdir -p "$out"
triple="$(rustc -vV | sed -n 's/^host: //p')"

cargo build --quiet --release -p gig-bench -p echo-mcp -p gigmcp -p registryctl -p gig-devimage
make --no-print-directory bootstrap >/dev/null
work="$(mktemp -d /tmp/gig-bench-iso.XXXXXX)"
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
# bubblewrap runs as nobody under root: what it binds must be reachable by nobody.
cp target/release/echo-mcp "target/static/$triple/release/bootstrap" "$work/"

echo "== 1. sandbox start-up and footprint"
target/release/gig-bench sandbox --server "$work/echo-mcp" --bootstrap "$work/bootstrap" --starts 50 --idle 20

echo "== 2. egress proxy (cargo bench -p gig-proxy), and mitmproxy on the same workload"
# mitmproxy (PyPI) for comparison, in its own venv under .bench/ (installed once).
mitm="$out/mitm/bin/mitmdump"
if [ ! -x "$mitm" ]; then
  python3 -m venv "$out/mitm" && "$out/mitm/bin/pip" install -q mitmproxy==11.0.2 >/dev/null 2>&1 \
    || echo "(mitmproxy could not be installed: comparison skipped)"
fi
[ -x "$mitm" ] && export GIG_BENCH_MITMDUMP="$here/$mitm"
cargo bench --quiet -p gig-proxy 2>&1 | grep -v '^\s*$' | grep -v 'Running\|Finished\|Compiling'

echo "== 3. netmgr attach / teardown"
cargo run --quiet --release -p gig-netmgr --example attach_bench 50

echo "== 4a. install: uncached vs cached image (gig-oci)"
cargo run --quiet --release -p gig-oci --features testing --example install_bench

echo "== 4b. cold GIG_INSTALL boot-to-ready, 1 and 20 servers"
port_of() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
reg_port="$(port_of)"
mkdir -p "$work/registry"
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
  "$work/registry" "$reg_port" >"$work/registry.yml"
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$reg_port/v2/" >/dev/null && break; sleep 0.1; done
target/release/gig-devimage --file "$work/echo-mcp" --name echo-mcp --push "127.0.0.1:$reg_port/echo-mcp:1" >/dev/null
key="$work/index.key"
pub="$(target/release/registryctl keygen --out "$key" | grep -o 'ed25519:[A-Za-z0-9+/=]*')"
refs=()
for i in $(seq 20); do
  target/release/registryctl add --index "$work/index.json" --name "echo$i" --version 1.0.0 \
    --image "127.0.0.1:$reg_port/echo-mcp:1" --entrypoint /srv/echo-mcp --insecure-registry >/dev/null
  refs+=("echo$i")
done
target/release/registryctl sign --index "$work/index.json" --key "$key" --expires-in 1d --out "$work/index.signed.json" >/dev/null
boot() {
  local n="$1" data="$work/data-$1" port
  port="$(port_of)"
  local install
  install="$(IFS=,; echo "${refs[*]:0:$n}")"
  local start end
  start="$(date +%s%N)"
  GIG_MASTER_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" GIG_BEARER_TOKEN=bench-token-0123456789 \
    GIG_LISTEN="127.0.0.1:$port" GIG_DATA_DIR="$data" GIG_LOG=warn GIG_BOOTSTRAP="$work/bootstrap" \
    GIG_INDEX_URL="file://$work/index.signed.json" GIG_INDEX_PUBKEYS="$pub" GIG_INSTALL="$install" \
    GIG_REGISTRY_PLAIN_HTTP=1 GIG_SANDBOX_POOL=198.18.236.0/22 \
    target/release/gigmcp >"$work/gw-$n.log" 2>&1 &
  local gw=$!
  for _ in $(seq 600); do
    if curl -sf "http://127.0.0.1:$port/readyz" 2>/dev/null | grep -q '"ready":true'; then break; fi
    sleep 0.02
  done
  end="$(date +%s%N)"
  kill "$gw"; wait "$gw" 2>/dev/null || true
  echo "  $n server(s): boot to ready $(( (end - start) / 1000000 )) ms (cold: empty data dir and image cache)"
}
boot 1
boot 20
