#!/usr/bin/env bash
# Builds the official Tailscale client (tailscaled + tailscale) used by the integration tests, from
# the Go module proxy, into one directory per version. The versions are pinned here and only here.
#
#   scripts/install_tailscale.sh [all|latest|oldest|vX.Y.Z]...   (default: all)
#   scripts/install_tailscale.sh --versions                       (prints "<alias> <version>")
#   scripts/install_tailscale.sh derper                           (Tailscale's DERP server, for
#                                                                  scripts/bench/derp_vs_derper.ts)
#
# For each requested version it prints "<version> <dir>" on stdout once <dir>/tailscaled and
# <dir>/tailscale are ready; build output goes to stderr. A version whose binaries are already there
# is not rebuilt, so calling this before every test run is cheap. `derper` is built only when asked
# for (never by `all`), at the `latest` version, into <root>/derper/<version>/derper; it prints
# "<version> <dir>" the same way.
#
# Environment:
#   TS_BIN_DIR     root of the per-version directories
#                  (default: ${XDG_CACHE_HOME:-$HOME/.cache}/headscale-deno/tailscale)
#   TS_GOTOOLCHAIN Go toolchain selection for the build (default: auto, which fetches a newer Go from
#                  the module proxy when the pinned version's go.mod asks for one)
set -euo pipefail

# Newest stable release the module proxy can build: every v1.104.x needs a gvisor module version
# that the module proxy refuses (403), so v1.102.5 is the newest that builds.
TS_LATEST=v1.102.5
# Oldest client the server supports (capability version 113).
TS_OLDEST=v1.80.3

bin_root="${TS_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/headscale-deno/tailscale}"

die() {
  echo "install_tailscale: $*" >&2
  exit 1
}

resolve_version() {
  case "$1" in
    latest) echo "$TS_LATEST" ;;
    oldest) echo "$TS_OLDEST" ;;
    v[0-9]*.[0-9]*.[0-9]*) echo "$1" ;;
    *) die "unknown version '$1' (want all, latest, oldest, derper or vX.Y.Z)" ;;
  esac
}

# True when both binaries exist and tailscaled reports the expected version.
installed() {
  local dir="$1" version="$2" reported
  [ -x "$dir/tailscaled" ] && [ -x "$dir/tailscale" ] || return 1
  reported="$("$dir/tailscaled" --version 2>/dev/null | head -n 1)" || return 1
  case "$reported" in
    "${version#v}" | "${version#v}"-*) return 0 ;;
    *) return 1 ;;
  esac
}

install_version() {
  local version="$1"
  local dir="$bin_root/$version"
  mkdir -p "$bin_root"
  # Parallel runs (two test suites, two CI steps) wait for each other instead of racing on $dir.
  exec 9>"$bin_root/.lock-$version"
  flock 9
  if ! installed "$dir" "$version"; then
    command -v go >/dev/null 2>&1 || die "Go is needed to build tailscale $version (https://go.dev/dl/)"
    local staging
    staging="$(mktemp -d "$bin_root/.build-$version.XXXXXX")"
    echo "install_tailscale: building tailscale $version (slow the first time; the Go build cache makes it fast later)" >&2
    chmod 755 "$staging"
    if ! GOBIN="$staging" GOTOOLCHAIN="${TS_GOTOOLCHAIN:-auto}" \
      go install "tailscale.com/cmd/tailscaled@$version" "tailscale.com/cmd/tailscale@$version" >&2; then
      rm -rf "$staging"
      die "go install of tailscale $version failed"
    fi
    installed "$staging" "$version" || {
      rm -rf "$staging"
      die "built binaries for $version do not report that version"
    }
    rm -rf "$dir"
    mv "$staging" "$dir"
  fi
  exec 9>&-
  echo "$version $dir"
}

# True when derper exists and reports the expected version.
derper_installed() {
  local dir="$1" version="$2" reported
  [ -x "$dir/derper" ] || return 1
  reported="$("$dir/derper" -version 2>/dev/null | head -n 1)" || return 1
  case "$reported" in
    "${version#v}" | "${version#v}"-*) return 0 ;;
    *) return 1 ;;
  esac
}

install_derper() {
  local version="$TS_LATEST"
  local dir="$bin_root/derper/$version"
  mkdir -p "$bin_root/derper"
  exec 9>"$bin_root/.lock-derper-$version"
  flock 9
  if ! derper_installed "$dir" "$version"; then
    command -v go >/dev/null 2>&1 || die "Go is needed to build derper $version (https://go.dev/dl/)"
    local staging
    staging="$(mktemp -d "$bin_root/derper/.build-$version.XXXXXX")"
    echo "install_tailscale: building derper $version" >&2
    chmod 755 "$staging"
    if ! GOBIN="$staging" GOTOOLCHAIN="${TS_GOTOOLCHAIN:-auto}" \
      go install "tailscale.com/cmd/derper@$version" >&2; then
      rm -rf "$staging"
      die "go install of derper $version failed"
    fi
    derper_installed "$staging" "$version" || {
      rm -rf "$staging"
      die "built derper does not report version $version"
    }
    rm -rf "$dir"
    mv "$staging" "$dir"
  fi
  exec 9>&-
  echo "$version $dir"
}

if [ "${1:-}" = "--versions" ]; then
  echo "latest $TS_LATEST"
  echo "oldest $TS_OLDEST"
  exit 0
fi

requested=("$@")
[ "${#requested[@]}" -gt 0 ] || requested=(all)
versions=()
for r in "${requested[@]}"; do
  if [ "$r" = all ]; then
    versions+=("$TS_LATEST" "$TS_OLDEST")
  elif [ "$r" = derper ]; then
    versions+=(derper)
  else
    versions+=("$(resolve_version "$r")")
  fi
done
for v in "${versions[@]}"; do
  if [ "$v" = derper ]; then
    install_derper
  else
    install_version "$v"
  fi
done
