#!/usr/bin/env bash
# Runs every test: unit and in-process protocol tests (SQLite and PostgreSQL), the policy
# conformance cases, and the integration suite with real Tailscale clients; ends with one
# summary line "test-all: N passed, N failed, N skipped".
# Needs root for network namespaces; PostgreSQL and Go for the full run (see .ci/run).
set -uo pipefail
cd "$(dirname "$0")/.."
deno=./scripts/deno
out=$(mktemp)
trap 'rm -f "$out"' EXIT

if [ -z "${HEADSCALE_TEST_POSTGRES_URL:-}" ] && [ -x scripts/pg_test_server.sh ]; then
  if url=$(scripts/pg_test_server.sh 2>/dev/null | tail -n 1) && [ -n "$url" ]; then
    export HEADSCALE_TEST_POSTGRES_URL="$url"
  else
    echo "note: no PostgreSQL server could be started; the PostgreSQL store tests are skipped" >&2
  fi
fi

# Runs a step, keeping its output for the summary; returns the step's own exit code.
step() {
  "$@" 2>&1 | tee -a "$out"
  return "${PIPESTATUS[0]}"
}

status=0
step "$deno" task test || status=1
if [ -d ../shared/policy-compat ] && [ -f scripts/policy_compat.ts ]; then
  step "$deno" task policy-compat || status=1
fi
if [ -x scripts/install_tailscale.sh ] && ls integration/*_test.ts >/dev/null 2>&1; then
  scripts/install_tailscale.sh >&2 || status=1
  # headscale itself, for its CLI's and the migration's tests (cached; a failed build fails the run
  # instead of leaving those tests skipped).
  scripts/install_headscale_cli.sh >/dev/null || status=1
  step "$deno" task integration || status=1
fi

# deno test lines: "ok | 12 passed (3 steps) | 0 failed | 1 ignored (3s)"; policy-compat: "702 passed, 2 failed",
# where failures on its checked-in skip list do not fail the run (they count as skipped).
sed 's/\x1b\[[0-9;]*m//g' "$out" | awk -v status="$status" '
  # "ok | 459 passed (1 step) | 0 failed | 1 ignored (1m8s)": steps are not tests.
  /^(ok|FAILED) \| [0-9]+ passed/ {
    line = $0
    sub(/ \([0-9]+ steps?\)/, "", line)
    n = split(line, w, " ")
    for (i = 2; i <= n; i++) {
      if (w[i] == "passed") p += w[i - 1]
      else if (w[i] == "failed") f += w[i - 1]
      else if (w[i] == "ignored") s += w[i - 1]
    }
  }
  /^[0-9]+ passed, [0-9]+ failed$/ { cp = $1; cf = $3 }
  END {
    p += cp
    if (status == 0) s += cf; else f += cf
    printf "test-all: %d passed, %d failed, %d skipped\n", p, f, s
  }'
exit "$status"
