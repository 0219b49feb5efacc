#!/usr/bin/env bash
# Builds headscale (one binary: its Go CLI, the comparison peer for API compatibility tests, and its
# server, which integration/migrate_headscale_test.ts runs before switching to ours) from the Go
# module proxy, pinned here, into a cache directory; prints the binary's path. Nothing of it enters
# the repo.
#
#   scripts/install_headscale_cli.sh        → prints /path/to/headscale
#
# `go install …@v0.29.2` fails here (the proxy refuses the module's version list, which go install
# reads for its deprecation check), so the module is downloaded and built in place.
set -euo pipefail

HEADSCALE_VERSION=v0.29.2
bin_dir="${HEADSCALE_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/headscale-deno/headscale}/$HEADSCALE_VERSION"
bin="$bin_dir/headscale"

# The directory is per version, and the binary is moved in only after a successful build.
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null 2>&1 || { echo "install_headscale_cli: Go is needed" >&2; exit 1; }
mkdir -p "$bin_dir"
exec 9>"$bin_dir/.lock"
flock 9
export GOTOOLCHAIN="${HS_GOTOOLCHAIN:-auto}" GOFLAGS=-mod=mod
dir=$(go mod download -json "github.com/juanfont/headscale@$HEADSCALE_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "install_headscale_cli: download failed" >&2; exit 1; }
tmp=$(mktemp -d)
(cd "$dir" && go build -trimpath -o "$tmp/headscale" ./cmd/headscale) >&2
mv "$tmp/headscale" "$bin"
rmdir "$tmp"
echo "$bin"
