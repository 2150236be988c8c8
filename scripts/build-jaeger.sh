#!/usr/bin/env bash
# Builds Jaeger v1.76.0 (the all-in-one binary, github.com/jaegertracing/jaeger/cmd/jaeger)
# from the Go module proxy into $HOOKGATE_CACHE/jaeger-1.76.0 (default
# ~/.cache/hookgate), through the tools module tools/jaeger, apart from
# hookgate's own go.mod. Prints the binary's path. A `jaeger` on PATH is
# preferred; the build is cached and redone only when the version changes.
# Built on a fresh machine (empty module and build caches) it took the time
# written in docs/operations.md ("Tracing").
set -euo pipefail
VERSION=1.76.0
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${HOOKGATE_CACHE:-$HOME/.cache/hookgate}
bin=$cache/jaeger-$VERSION
if command -v jaeger >/dev/null 2>&1; then command -v jaeger; exit 0; fi
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
mkdir -p "$cache"
cd "$here/tools/jaeger"
export GOFLAGS=-mod=mod
go build -o "$bin.tmp" github.com/jaegertracing/jaeger/cmd/jaeger >&2
mv "$bin.tmp" "$bin"
echo "$bin"
