#!/usr/bin/env bash
# Runs every test: unit and in-process protocol tests (SQLite and PostgreSQL), the policy
# conformance cases, and the integration suite with real Tailscale clients.
# Needs root for network namespaces; PostgreSQL and Go for the full run (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
deno=./scripts/deno

if [ -z "${HEADSCALE_TEST_POSTGRES_URL:-}" ] && [ -x scripts/pg_test_server.sh ]; then
  if url=$(scripts/pg_test_server.sh 2>/dev/null | tail -n 1) && [ -n "$url" ]; then
    export HEADSCALE_TEST_POSTGRES_URL="$url"
  else
    echo "note: no PostgreSQL server could be started; the PostgreSQL store tests are skipped" >&2
  fi
fi

status=0
"$deno" task test || status=1
if [ -d ../shared/policy-compat ] && [ -f scripts/policy_compat.ts ]; then
  "$deno" task policy-compat || status=1
fi
if [ -x scripts/install_tailscale.sh ] && ls integration/*_test.ts >/dev/null 2>&1; then
  scripts/install_tailscale.sh >&2
  "$deno" task integration || status=1
fi
exit "$status"
