#!/usr/bin/env bash
# Runs every Go fuzz target for a while each: scripts/fuzz.sh 60s, or a
# number of executions each: scripts/fuzz.sh 5000x.
# (The seed corpus already runs as plain tests under go test.)
#
# Go 1.26's fuzz coordinator can fail a target with a bare "context
# deadline exceeded" when a -fuzztime duration ends while a worker is
# busy (golang/go#75804, fixed in Go 1.27): no input is written and
# nothing is wrong with the target. Such a run is retried once with an
# execution count, which has no deadline to race; any other failure, or a
# failing input written, fails at once.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
time=${1:-60s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for dir in $(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -r -n1 dirname | sort -u); do
  for f in $(grep -h '^func Fuzz' "$dir"/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/' | sort -u); do
    echo "== fuzz $dir $f ($time)" >&2
    if go test -run='^$' -fuzz="^$f\$" -fuzztime="$time" "$dir" 2>&1 | tee "$out"; then
      continue
    fi
    if grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written' "$out"; then
      echo "== fuzz $dir $f: the Go fuzz deadline race (golang/go#75804), no input found; retrying with -fuzztime 2000x" >&2
      go test -run='^$' -fuzz="^$f\$" -fuzztime=2000x "$dir"
      continue
    fi
    exit 1
  done
done
