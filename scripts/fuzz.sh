#!/usr/bin/env bash
# Runs every Go fuzz target for a while each: scripts/fuzz.sh 60s.
# (The seed corpus already runs as plain tests under go test.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
time=${1:-60s}
for dir in $(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -r -n1 dirname | sort -u); do
  for f in $(grep -h '^func Fuzz' "$dir"/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/' | sort -u); do
    echo "== fuzz $dir $f ($time)" >&2
    go test -run='^$' -fuzz="^$f\$" -fuzztime="$time" "$dir"
  done
done
