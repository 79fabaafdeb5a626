#!/usr/bin/env bash
# Builds a pinned Go tool once into a cache outside the repository and prints its path.
#   scripts/go-tool.sh fortio          -> .../fortio-v1.66.5/fortio
# The cache is ${ZTUNNEL_TS_CACHE:-$HOME/.cache/ztunnel-ts}/go; a tool is rebuilt only when its pinned
# version changes. Needs Go and the Go module proxy. Binaries are never committed.
set -euo pipefail
name=${1:?usage: go-tool.sh fortio}
cache="${ZTUNNEL_TS_CACHE:-$HOME/.cache/ztunnel-ts}/go"
case "$name" in
  # fortio v1.67 and later need grol.io/grol, which the module proxy here refuses (403); v1.66.5 does not.
  fortio) module=fortio.org/fortio; version=v1.66.5; bin=fortio ;;
  *) echo "go-tool.sh: unknown tool $name" >&2; exit 2 ;;
esac
dir="$cache/$name-$version"
if [ ! -x "$dir/$bin" ]; then
  command -v go >/dev/null 2>&1 || { echo "go-tool.sh: Go is not installed, cannot build $name" >&2; exit 3; }
  mkdir -p "$dir"
  # Outside any module, so the pinned version alone decides what is built.
  (cd "$dir" && GOBIN="$dir" GOFLAGS=-mod=mod go install "$module@$version") >&2
fi
echo "$dir/$bin"
