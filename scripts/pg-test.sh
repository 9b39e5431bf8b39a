#!/usr/bin/env bash
# Throwaway PostgreSQL for gig-store's tests.
#
#   scripts/pg-test.sh start DIR PORT   # prints postgres://gig:PASSWORD@127.0.0.1:PORT/gig
#   scripts/pg-test.sh stop DIR         # stops the server and removes DIR
#   scripts/pg-test.sh halt DIR         # stops the server, keeping its data (a fault to test)
#   scripts/pg-test.sh resume DIR       # starts a halted server again on the same port
#
# Installs Debian's `postgresql` if no server binaries are found (needs root). As root the
# cluster runs as the `postgres` user, so DIR's parent must be traversable by it (e.g. /tmp).
# The server listens on 127.0.0.1:PORT only; its Unix socket lives in DIR. Only the URL goes to
# stdout, so `URL=$(scripts/pg-test.sh start ...)` works; progress goes to stderr.
set -euo pipefail

MARKER=.gig-pg-test

die() { echo "pg-test: $*" >&2; exit 1; }
say() { echo "pg-test: $*" >&2; }

usage() {
    echo "usage: $0 start DIR PORT | stop DIR | halt DIR | resume DIR" >&2
    exit 2
}

pg_bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -n "$dir" && -x "$dir/pg_ctl" ]] && echo "$dir"
}

ensure_postgres() {
    if pg_bindir >/dev/null; then return; fi
    [[ $(id -u) -eq 0 ]] || die "PostgreSQL is not installed and installing it needs root"
    say "installing Debian's postgresql package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
    pg_bindir >/dev/null || die "postgresql installed but no server binaries under /usr/lib/postgresql"
    # The package may start its default cluster; the tests use their own, so stop that one.
    if command -v pg_lsclusters >/dev/null; then
        pg_lsclusters -h | awk '$4 == "online" {print $1, $2}' | while read -r version cluster; do
            pg_ctlcluster "$version" "$cluster" stop >&2 || true
        done
    fi
}

# Run a command as the cluster owner: `postgres` when we are root, else ourselves.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local dir=$1 port=$2
    [[ "$port" =~ ^[0-9]+$ ]] && (( port > 0 && port < 65536 )) || die "bad port: $port"
    ensure_postgres
    local bin
    bin=$(pg_bindir)
    [[ ! -e "$dir/data" ]] || die "$dir/data already exists; run '$0 stop $dir' first"

    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    touch "$dir/$MARKER"
    if [[ $(id -u) -eq 0 ]]; then chown -R postgres:postgres "$dir"; fi
    chmod 700 "$dir"

    local password
    password=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' | head -c 32)

    say "initdb into $dir/data"
    # Local (socket) logins are trusted: the socket sits in DIR, mode 0700, owned by the
    # cluster owner. TCP logins need the password.
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --encoding=UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; die "initdb failed"; }

    say "starting on 127.0.0.1:$port"
    local options="-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c fsync=off"
    echo "$options" >"$dir/options"
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 -o "$options" \
        start >&2 || { cat "$dir/postgres.log" >&2; die "pg_ctl start failed"; }

    as_owner "$bin/psql" -X -q -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE gig LOGIN CREATEDB PASSWORD '$password'" \
        -c "CREATE DATABASE gig OWNER gig" >&2

    local url="postgres://gig:$password@127.0.0.1:$port/gig"
    (umask 077 && echo "$url" >"$dir/url")
    echo "$url"
}

stop() {
    local dir=$1
    [[ -d "$dir" ]] || { say "$dir does not exist; nothing to stop"; return 0; }
    [[ -e "$dir/$MARKER" ]] || die "$dir was not made by this script; refusing to remove it"
    local bin
    bin=$(pg_bindir) || die "no PostgreSQL binaries found"
    if [[ -f "$dir/data/postmaster.pid" ]]; then
        say "stopping the server in $dir/data"
        as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >&2
    fi
    rm -rf -- "$dir"
    say "removed $dir"
}

halt() {
    local dir=$1
    [[ -e "$dir/$MARKER" ]] || die "$dir was not made by this script"
    as_owner "$(pg_bindir)/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >&2
}

resume() {
    local dir=$1
    [[ -e "$dir/$MARKER" ]] || die "$dir was not made by this script"
    as_owner "$(pg_bindir)/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
        -o "$(cat "$dir/options")" start >&2 || { tail -n 20 "$dir/postgres.log" >&2; die "pg_ctl start failed"; }
}

case "${1:-}" in
    start) [[ $# -eq 3 ]] || usage; start "$2" "$3" ;;
    stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
    halt) [[ $# -eq 2 ]] || usage; halt "$2" ;;
    resume) [[ $# -eq 2 ]] || usage; resume "$2" ;;
    *) usage ;;
esac
