#!/usr/bin/env bash
# Local PostgreSQL for CountyPool, using Debian's binaries (no Docker, no
# Debian-managed cluster: our own cluster in a data dir, on its own port).
#
# Usage: deploy/postgres/postgres.sh {install|start|stop|restart|status|foreground|url|psql|reset}
#   install     apt-get install postgresql if no binaries exist under /usr/lib/postgresql
#   start       initdb if needed, start on 127.0.0.1:$PG_PORT, wait with pg_isready,
#               ensure role countypool (password countypool, superuser) and databases
#   stop        pg_ctl stop -m fast (immediate after PG_STOP_TIMEOUT s)
#   status      exit 0 if running and accepting connections, 3 if not running
#   foreground  exec the postmaster in the foreground (for a supervisor)
#   url [DB]    print the SQLAlchemy URL (default DB countypool_ledger)
#   psql [ARGS] psql as countypool (default DB countypool_ledger)
#   reset       stop and delete the data dir
#
# Environment (defaults):
#   PG_PORT=55432  PG_HOST=127.0.0.1  PG_DATA_DIR=<repo>/.data/postgres
#   PG_SOCKET_DIR=/tmp  PG_READY_TIMEOUT=60  PG_STOP_TIMEOUT=60
#   PG_FAST=0     1 = fsync/synchronous_commit/full_page_writes off (throw-away CI data)
#   PG_DATABASES="countypool_ledger countypool_quota countypool_settlement countypool_assessment countypool_test"
# Runs the server as the `postgres` system user when invoked as root (postgres
# refuses to run as root), otherwise as the invoking user.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/../.." && pwd)"

PG_HOST="${PG_HOST:-127.0.0.1}"
PG_PORT="${PG_PORT:-55432}"
PG_SOCKET_DIR="${PG_SOCKET_DIR:-/tmp}"
PG_READY_TIMEOUT="${PG_READY_TIMEOUT:-60}"
PG_STOP_TIMEOUT="${PG_STOP_TIMEOUT:-60}"
PG_FAST="${PG_FAST:-0}"
PG_DATABASES="${PG_DATABASES:-countypool_ledger countypool_quota countypool_settlement countypool_assessment countypool_test}"
APP_USER=countypool
APP_PASSWORD=countypool
ADMIN_USER=postgres          # initdb -U postgres, whatever the OS user is
RUN_USER=postgres            # OS user running the server when we are root

log() { echo "postgres.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
is_root() { [[ $(id -u) -eq 0 ]]; }

find_bindir() {
  local d best=""
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
    [[ -x "$d/pg_ctl" && -x "$d/initdb" && -x "$d/postgres" ]] && best="$d"
  done
  echo "$best"
}

# run a command as the server's OS user (from / so an unreadable cwd doesn't matter)
as_pg() {
  if is_root; then (cd / && runuser -u "$RUN_USER" -- "$@")
  else (cd / && "$@"); fi
}

# the data dir must be reachable by the postgres user; e.g. a repo under /root is not
resolve_data_dir() {
  local default="$REPO_DIR/.data/postgres"
  PG_DATA_DIR="${PG_DATA_DIR:-}"
  if [[ -z "$PG_DATA_DIR" ]]; then
    PG_DATA_DIR="$default"
    if is_root && ! runuser -u "$RUN_USER" -- test -x "$REPO_DIR" 2>/dev/null; then
      PG_DATA_DIR="/var/tmp/countypool-postgres-$(echo -n "$REPO_DIR" | sha1sum | cut -c1-10)"
      log "$REPO_DIR is not reachable by user $RUN_USER; using $PG_DATA_DIR"
    fi
  fi
  mkdir -p "$(dirname "$PG_DATA_DIR")"
  PG_DATA_DIR="$(cd "$(dirname "$PG_DATA_DIR")" && pwd)/$(basename "$PG_DATA_DIR")"
  PG_LOG="$PG_DATA_DIR/postgres.log"
}

cmd_install() {
  if [[ -n "$(find_bindir)" ]]; then log "postgres binaries present in $(find_bindir)"; return 0; fi
  is_root || die "no postgres binaries under /usr/lib/postgresql; run as root or: sudo apt-get install -y postgresql"
  export DEBIAN_FRONTEND=noninteractive
  log "installing postgresql from Debian"
  apt-get update -qq
  # don't let the package create (and start) its own 'main' cluster on 5432: we never use it
  apt-get install -y -qq postgresql-common >/dev/null
  if [[ -f /etc/postgresql-common/createcluster.conf ]]; then
    sed -i 's/^#\?\s*create_main_cluster\s*=.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
  fi
  apt-get install -y -qq postgresql >/dev/null
  [[ -n "$(find_bindir)" ]] || die "postgresql installed but no binaries under /usr/lib/postgresql"
  log "installed $(find_bindir)"
}

setup_bin() {
  BIN="$(find_bindir)"
  if [[ -z "$BIN" ]]; then cmd_install; BIN="$(find_bindir)"; fi
  PG_VERSION="$(basename "$(dirname "$BIN")")"
  if is_root && ! id "$RUN_USER" >/dev/null 2>&1; then
    log "creating system user $RUN_USER"
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash "$RUN_USER"
  fi
}

psql_admin() {  # psql_admin [psql args...] ; as superuser over TCP (trust)
  "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$ADMIN_USER" -d postgres "$@"
}

is_ready() { "$BIN/pg_isready" -q -h "$PG_HOST" -p "$PG_PORT" -U "$ADMIN_USER" -d postgres -t 2 >/dev/null 2>&1; }

our_pid() {  # pid of the postmaster of our data dir, if alive
  local pid
  [[ -f "$PG_DATA_DIR/postmaster.pid" ]] || return 1
  pid="$(head -n1 "$PG_DATA_DIR/postmaster.pid" 2>/dev/null)"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

init_cluster() {
  [[ -f "$PG_DATA_DIR/PG_VERSION" ]] && return 0
  local locale=C
  locale -a 2>/dev/null | grep -qix 'c.utf-\?8' && locale=C.UTF-8
  log "initdb $PG_DATA_DIR (PostgreSQL $PG_VERSION, locale $locale)"
  mkdir -p "$PG_DATA_DIR"
  if [[ "$PG_DATA_DIR" == "$REPO_DIR/.data/"* && ! -e "$REPO_DIR/.data/.gitignore" ]]; then
    echo '*' > "$REPO_DIR/.data/.gitignore"     # self-ignoring .data dir inside the repo
  fi
  is_root && chown "$RUN_USER:" "$PG_DATA_DIR"
  chmod 700 "$PG_DATA_DIR"
  as_pg "$BIN/initdb" -D "$PG_DATA_DIR" -U "$ADMIN_USER" --auth=trust --encoding=UTF8 \
    --locale="$locale" >"$PG_DATA_DIR.initdb.log" 2>&1 \
    || { cat "$PG_DATA_DIR.initdb.log" >&2; die "initdb failed"; }
  rm -f "$PG_DATA_DIR.initdb.log"
  echo "include_if_exists = 'countypool.conf'" | as_pg tee -a "$PG_DATA_DIR/postgresql.conf" >/dev/null
}

write_config() {  # regenerated on every start so PG_PORT etc. apply
  local fast=""
  if [[ "$PG_FAST" == 1 ]]; then
    fast=$'fsync = off\nsynchronous_commit = off\nfull_page_writes = off'
  fi
  as_pg tee "$PG_DATA_DIR/countypool.conf" >/dev/null <<EOF
# generated by deploy/postgres/postgres.sh on every start
listen_addresses = '$PG_HOST'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
max_connections = 200
shared_buffers = 128MB
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
$fast
EOF
  as_pg tee "$PG_DATA_DIR/pg_hba.conf" >/dev/null <<EOF
# generated by deploy/postgres/postgres.sh: trust, loopback and local socket only
local   all   all                 trust
host    all   all   127.0.0.1/32  trust
host    all   all   ::1/128       trust
local   replication   all                 trust
host    replication   all   127.0.0.1/32  trust
EOF
}

ensure_role_and_dbs() {
  psql_admin <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$APP_USER') THEN
    CREATE ROLE $APP_USER LOGIN SUPERUSER CREATEDB CREATEROLE PASSWORD '$APP_PASSWORD';
  ELSE
    ALTER ROLE $APP_USER LOGIN SUPERUSER CREATEDB CREATEROLE PASSWORD '$APP_PASSWORD';
  END IF;
END
\$\$;
SELECT format('CREATE DATABASE %I OWNER $APP_USER', d)
  FROM unnest(string_to_array('$PG_DATABASES', ' ')) AS d
 WHERE d <> '' AND NOT EXISTS (SELECT FROM pg_database WHERE datname = d)
\gexec
SQL
}

print_urls() {
  local db
  for db in $PG_DATABASES; do
    echo "postgresql+psycopg://$APP_USER:$APP_PASSWORD@$PG_HOST:$PG_PORT/$db"
  done
}

cmd_start() {
  setup_bin; resolve_data_dir
  local t0 pid; t0="$(now)"
  if pid="$(our_pid)"; then
    if is_ready; then
      echo "postgres already running (pid $pid) on $PG_HOST:$PG_PORT"
      ensure_role_and_dbs; print_urls; return 0
    fi
  elif is_ready; then
    echo "a postgres server is already answering on $PG_HOST:$PG_PORT (not the one in $PG_DATA_DIR); leaving it"
    return 0
  fi
  if [[ -z "${pid:-}" ]]; then
    init_cluster
    write_config
    [[ -f "$PG_LOG" ]] || as_pg touch "$PG_LOG"
    # -W: don't wait here; we poll pg_isready ourselves with our own timeout
    as_pg "$BIN/pg_ctl" -D "$PG_DATA_DIR" -l "$PG_LOG" -W -s start >/dev/null \
      || { tail -n 30 "$PG_LOG" >&2; die "pg_ctl start failed"; }
  fi
  local started=$EPOCHSECONDS
  until is_ready; do
    if (( EPOCHSECONDS >= started + PG_READY_TIMEOUT )); then
      tail -n 30 "$PG_LOG" >&2; die "postgres not ready after ${PG_READY_TIMEOUT}s (log: $PG_LOG)"
    fi
    if (( EPOCHSECONDS >= started + 3 )) && ! our_pid >/dev/null; then
      tail -n 30 "$PG_LOG" >&2; die "postgres exited during start-up (log: $PG_LOG)"
    fi
    sleep 0.2
  done
  ensure_role_and_dbs
  echo "postgres $PG_VERSION ready on $PG_HOST:$PG_PORT in $(elapsed "$t0") s (data: $PG_DATA_DIR)"
  print_urls
}

cmd_foreground() {
  setup_bin; resolve_data_dir
  our_pid >/dev/null && die "postgres already running for $PG_DATA_DIR"
  init_cluster
  write_config
  log "exec postgres $PG_VERSION in the foreground on $PG_HOST:$PG_PORT"
  # role/dbs: created by a detached helper once the server accepts connections.
  # Double fork: the helper must not become a child of the postmaster (it would
  # treat an unknown child's non-zero exit as a backend crash).
  ( ( deadline=$(( EPOCHSECONDS + PG_READY_TIMEOUT ))
      until is_ready || (( EPOCHSECONDS >= deadline )); do sleep 0.2; done
      is_ready && ensure_role_and_dbs && print_urls >&2 ) </dev/null & )
  if is_root; then cd / && exec runuser -u "$RUN_USER" -- "$BIN/postgres" -D "$PG_DATA_DIR"
  else exec "$BIN/postgres" -D "$PG_DATA_DIR"; fi
}

cmd_stop() {
  setup_bin; resolve_data_dir
  local pid
  if ! pid="$(our_pid)"; then echo "postgres not running"; return 0; fi
  log "stopping postgres (pid $pid)"
  if ! as_pg "$BIN/pg_ctl" -D "$PG_DATA_DIR" -m fast -w -t "$PG_STOP_TIMEOUT" -s stop; then
    log "fast shutdown timed out; using immediate"
    as_pg "$BIN/pg_ctl" -D "$PG_DATA_DIR" -m immediate -w -t 30 -s stop || kill -KILL "$pid" 2>/dev/null || true
  fi
  echo "postgres stopped"
}

cmd_status() {
  setup_bin; resolve_data_dir
  local pid
  if pid="$(our_pid)"; then
    if is_ready; then echo "postgres running (pid $pid), accepting connections on $PG_HOST:$PG_PORT"; return 0; fi
    echo "postgres running (pid $pid), NOT accepting connections on $PG_HOST:$PG_PORT"; return 1
  fi
  if is_ready; then echo "postgres not started from $PG_DATA_DIR, but $PG_HOST:$PG_PORT accepts connections"; return 0; fi
  echo "postgres not running"; return 3
}

cmd_reset() {
  cmd_stop
  [[ -d "$PG_DATA_DIR" ]] && rm -rf "$PG_DATA_DIR"
  echo "removed $PG_DATA_DIR"
}

case "${1:-}" in
  install)    cmd_install ;;
  start)      cmd_start ;;
  stop)       cmd_stop ;;
  restart)    cmd_stop; cmd_start ;;
  status)     cmd_status ;;
  foreground|run) cmd_foreground ;;
  url)        echo "postgresql+psycopg://$APP_USER:$APP_PASSWORD@$PG_HOST:$PG_PORT/${2:-countypool_ledger}" ;;
  psql)       shift; BIN="$(find_bindir)"; [[ -n "$BIN" ]] || die "no postgres binaries"
              db=countypool_ledger; if [[ $# -gt 0 && "$1" != -* ]]; then db="$1"; shift; fi
              PGPASSWORD="$APP_PASSWORD" exec "$BIN/psql" -h "$PG_HOST" -p "$PG_PORT" -U "$APP_USER" -d "$db" "$@" ;;
  reset)      cmd_reset ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
