#!/usr/bin/env bash
# with-postgres.sh CMD...: run CMD with a throwaway PostgreSQL on loopback, then remove it.
# Exports GIG_TEST_DATABASE_URL and GIG_REQUIRE_POSTGRES=1, so the store's Postgres tests run
# (and fail rather than skip if the database is missing). The server is stopped and its
# directory removed on every exit path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="$(mktemp -d /tmp/gig-pg.XXXXXX)"
chmod 755 "$dir"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cleanup() { "$here/pg-test.sh" stop "$dir/pg" >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
GIG_TEST_DATABASE_URL="$("$here/pg-test.sh" start "$dir/pg" "$port")"
export GIG_TEST_DATABASE_URL GIG_REQUIRE_POSTGRES=1
"$@"
