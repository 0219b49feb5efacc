#!/usr/bin/env bash
# Starts a throwaway PostgreSQL for the store tests and prints the URL to export as
# HEADSCALE_TEST_POSTGRES_URL (the last line of stdout; progress goes to stderr).
#
#   scripts/pg_test_server.sh [port]        # default port 5433, listens on 127.0.0.1 only
#   scripts/pg_test_server.sh [port] stop   # stops it and removes its data
#   scripts/pg_test_server.sh [port] halt   # stops it, keeping its data (start brings it back)
#
# Running it again while the server is up just prints the URL. The data lives in a temp dir
# named after the port (or $HEADSCALE_PG_TEST_DIR); fsync is off because nothing in it needs
# to outlive the test run.
set -euo pipefail

port="${1:-5433}"
action="${2:-start}"
db_name=headscale_test
db_user=headscale_test
db_pass=headscale_test
# Not $TMPDIR: the postgres user must be able to reach it.
base="${HEADSCALE_PG_TEST_DIR:-/tmp/headscale-pg-${port}}"
data="$base/data"
url="postgres://${db_user}:${db_pass}@127.0.0.1:${port}/${db_name}"

case "$port" in
'' | *[!0-9]*)
  echo "usage: $0 [port] [start|stop|halt]" >&2
  exit 2
  ;;
esac

bin=""
for dir in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
  if [ -x "$dir/initdb" ]; then
    bin="$dir"
    break
  fi
done
if [ -z "$bin" ] && command -v pg_config >/dev/null 2>&1; then
  bin="$(pg_config --bindir)"
fi
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2
  exit 1
fi

# PostgreSQL refuses to run as root, so root runs it as the postgres OS user.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

if [ "$action" = halt ]; then
  as_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >&2
  exit 0
fi

if [ "$action" = stop ]; then
  if [ -d "$data" ]; then
    as_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >&2 || true
  fi
  rm -rf "$base"
  exit 0
fi

mkdir -p "$base"
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$base"
fi

if [ ! -f "$data/PG_VERSION" ]; then
  rm -rf "$data"
  echo "initialising a test cluster in $data" >&2
  as_owner "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-sync >&2
fi

if ! as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  echo "starting PostgreSQL on 127.0.0.1:$port" >&2
  as_owner "$bin/pg_ctl" -D "$data" -l "$base/server.log" -w -t 30 \
    -o "-p $port -k $base -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
    start >&2
fi

psql() {
  as_owner "$bin/psql" -h "$base" -p "$port" -U postgres -X -q -v ON_ERROR_STOP=1 "$@"
}

if [ "$(psql -d postgres -tAc "select 1 from pg_roles where rolname = '$db_user'")" != 1 ]; then
  psql -d postgres -c "create role $db_user login password '$db_pass'" >&2
fi
if [ "$(psql -d postgres -tAc "select 1 from pg_database where datname = '$db_name'")" != 1 ]; then
  psql -d postgres -c "create database $db_name owner $db_user" >&2
fi

echo "export HEADSCALE_TEST_POSTGRES_URL=$url" >&2
echo "$url"
