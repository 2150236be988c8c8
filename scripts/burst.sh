#!/usr/bin/env bash
# Memory under large bodies (issue 14): starts hookgate on a private data
# dir with a token source, sends 300 JSON bodies of 1 MiB on 32
# connections, then follows RSS until it is under 200 MB (or 2 minutes
# pass), and does the same with 16 forms of 100 000 fields. Prints the
# peak and the time back; docs/performance.md, "Memory under large bodies".
#
#   scripts/burst.sh            BURST_N=300 BURST_C=32 BURST_SIZE=1048576
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. "$root/scripts/lib.sh"
work=$(mktemp -d /tmp/hookgate-burst.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM
go build -o "$work/hookgate" ./cmd/hookgate
go build -o "$work/loadbench" ./bench/cmd/loadbench
port=$(free_port); bus=$(free_port)
cat >"$work/hookgate.yaml" <<YAML
server: {listen: "127.0.0.1:$port", max_body_bytes: 2097152}
data_dir: $work/data
bus: {listen: "127.0.0.1:$bus"}
secrets: {backend: file, file: $work/secrets.yaml}
sources:
  - {id: ci, provider: token, secret: ci/token}
YAML
echo 'ci/token: {token: burst-token-1234}' >"$work/secrets.yaml"
"$work/hookgate" serve --config "$work/hookgate.yaml" >"$work/hookgate.log" 2>&1 &
pid=$!
wait_port "$port" hookgate
url="http://127.0.0.1:$port/webhook/ci?token=burst-token-1234"
echo "== ${BURST_N:-300} JSON bodies of ${BURST_SIZE:-1048576} bytes on ${BURST_C:-32} connections"
"$work/loadbench" burst -url "$url" -pid "$pid" -n "${BURST_N:-300}" -c "${BURST_C:-32}" -size "${BURST_SIZE:-1048576}"
echo "== 16 forms of 100 000 fields on 16 connections"
"$work/loadbench" burst -url "$url" -pid "$pid" -n 16 -c 16 -form-fields 100000
