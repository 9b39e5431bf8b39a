#!/usr/bin/env bash
# cargo-deny.sh PEERS_DIR ARGS...: run the pinned cargo-deny with ARGS (`make lint` does).
# It is not a Debian package, so `cargo install` builds it: once, into PEERS_DIR/cargo, since
# `cargo install cargo-deny --locked` took 8m18s on a busy 2-core machine (too long to repeat per
# run). A cargo-deny of the same version already on PATH is used as it is.
set -euo pipefail
VERSION=0.20.2
[ $# -ge 1 ] || { echo "usage: $0 PEERS_DIR ARGS..." >&2; exit 2; }
peers="$1"
shift
want="cargo-deny $VERSION"
if [ "$(cargo-deny --version 2>/dev/null)" = "$want" ]; then
  deny=cargo-deny
else
  deny="$peers/cargo/bin/cargo-deny"
  if [ "$("$deny" --version 2>/dev/null)" != "$want" ]; then
    echo "[lint] cargo install cargo-deny@$VERSION into $peers/cargo (once; several minutes)" >&2
    cargo install --quiet --locked --root "$peers/cargo" "cargo-deny@$VERSION"
  fi
fi
exec "$deny" "$@"
