#!/usr/bin/env bash
# A private PostgreSQL server for the `shapewise tune` tests (tests/tune/, marker "postgres").
#
#   eval "$(scripts/ci_postgres.sh start)"   # prints the export lines below, nothing else
#   pytest -m postgres tests/tune
#   scripts/ci_postgres.sh stop              # stops it and deletes its folder
#
# start: installs Debian's postgresql package when no server binaries are found (root and
# apt-get needed), makes a data folder under a fresh temporary folder, and starts the server
# there on a Unix socket in that folder only (listen_addresses='': no TCP port, so nothing
# else on the machine can collide with it or reach it). PostgreSQL refuses to run as root:
# as root the server runs as the 'postgres' user (made by the Debian package), else 'nobody'.
# Authentication is 'trust' for this private socket. It prints
#
#   export SHAPEWISE_TEST_POSTGRES_URL='postgresql://shapewise@/shapewise_test?host=DIR'
#   export SHAPEWISE_PG_DIR='DIR'
#
# SHAPEWISE_PG_TCP=1 also listens on 127.0.0.1 at a free port, and the URL uses it.
# The client side needs psycopg2 in the Python environment (pip install psycopg2-binary).
set -euo pipefail

say() { echo "ci_postgres: $*" >&2; }
die() { say "error: $*"; exit 1; }

find_bin() {
    # newest /usr/lib/postgresql/N/bin (the Debian layout), else initdb on the PATH
    local d best=""
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] || continue
        if [[ -z "$best" ]] || [[ "$(basename "$(dirname "$d")")" -gt \
                "$(basename "$(dirname "$best")")" ]]; then
            best="$d"
        fi
    done
    if [[ -z "$best" ]] && command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        best="$(dirname "$(command -v initdb)")"
    fi
    echo "$best"
}

install_postgres() {
    [[ "$(id -u)" == 0 ]] || die "no PostgreSQL server binaries, and not root to install them"
    command -v apt-get >/dev/null || die "no PostgreSQL server binaries and no apt-get"
    say "installing Debian's postgresql package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends postgresql >&2 || {
        apt-get update >&2
        apt-get install -y --no-install-recommends postgresql >&2
    }
}

free_port() {
    local p
    for p in $(shuf -i 20000-60000 -n 50); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free TCP port found"
}

start() {
    local bin
    bin="$(find_bin)"
    if [[ -z "$bin" ]]; then
        install_postgres
        bin="$(find_bin)"
        [[ -n "$bin" ]] || die "postgresql installed, but no initdb/pg_ctl found"
    fi
    local dir
    dir="$(mktemp -d "${TMPDIR:-/tmp}/shapewise-pg.XXXXXX")"
    local as=()
    if [[ "$(id -u)" == 0 ]]; then
        local user=postgres
        id "$user" >/dev/null 2>&1 || user=nobody
        chown "$user" "$dir"
        as=(runuser -u "$user" --)
    fi
    local port=5432 listen="''" host="$dir"
    if [[ "${SHAPEWISE_PG_TCP:-0}" == 1 ]]; then
        port="$(free_port)"
        listen="127.0.0.1"
        host=127.0.0.1
    fi
    say "server $bin, data in $dir/data, socket in $dir (port $port)"
    "${as[@]}" "$bin/initdb" -D "$dir/data" -U shapewise --auth=trust -E UTF8 \
        --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-k $dir -p $port -c listen_addresses=$listen -c fsync=off" start >&2 \
        || { cat "$dir/server.log" >&2; die "the server did not start"; }
    "${as[@]}" "$bin/createdb" -h "$dir" -p "$port" -U shapewise shapewise_test \
        || die "createdb failed"
    local url
    if [[ "$host" == "$dir" ]]; then
        url="postgresql://shapewise@/shapewise_test?host=$dir&port=$port"
    else
        url="postgresql://shapewise@127.0.0.1:$port/shapewise_test"
    fi
    echo "export SHAPEWISE_TEST_POSTGRES_URL='$url'"
    echo "export SHAPEWISE_PG_DIR='$dir'"
}

stop() {
    local dir="${1:-${SHAPEWISE_PG_DIR:-}}"
    [[ -n "$dir" && -d "$dir/data" ]] || die "stop: give the folder (or set SHAPEWISE_PG_DIR)"
    local bin
    bin="$(find_bin)"
    local as=()
    if [[ "$(id -u)" == 0 ]]; then
        as=(runuser -u "$(stat -c %U "$dir/data")" --)
    fi
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || say "stop: pg_ctl failed"
    rm -rf -- "$dir"
    say "stopped and removed $dir"
}

case "${1:-start}" in
    start) start ;;
    stop) shift; stop "${1:-}" ;;
    *) die "usage: $0 [start|stop [DIR]]" ;;
esac
