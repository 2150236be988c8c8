#!/usr/bin/env bash
# task traces: a local Jaeger with hookgate pointed at it (docs/operations.md,
# "Tracing"). It builds Jaeger v1.76.0 from the Go module proxy (cached in
# $HOOKGATE_CACHE, see scripts/build-jaeger.sh), then starts on free loopback
# ports, in a temporary directory: Jaeger (in-memory storage, OTLP/HTTP and
# gRPC in, query API out), the Bitrix24 simulator, the receiver (a platform
# stand-in), and hookgate serve with one source and one route (enrich through
# the simulator, deliver to the receiver), exporting every event's trace to
# Jaeger. It posts one Bitrix24 event, reads its trace id from history and
# prints the Jaeger query that shows the trace. Then it waits for Ctrl-C and
# stops everything it started.
#
#   scripts/traces.sh           interactive: keeps running until Ctrl-C
#   scripts/traces.sh --check   posts, checks the trace is in Jaeger, stops
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. "$root/scripts/lib.sh"
check=""; [ "${1:-}" = --check ] && check=1
log() { printf '== %s\n' "$*" >&2; }
work=$(mktemp -d /tmp/hookgate-traces.XXXXXX)
pids=()
cleanup() {
  local rc=$? i
  # newest first, each waited for: hookgate flushes its spans while Jaeger runs
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  if [ $rc -ne 0 ]; then
    for f in "$work"/*.log; do [ -s "$f" ] && { echo "--- tail of $f" >&2; tail -n 15 "$f" >&2; }; done
  fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT INT TERM

log "jaeger binary (the first build takes a while, see docs/operations.md)"
jaeger=$("$root/scripts/build-jaeger.sh")
log "building hookgate, b24sim, receiver"
go build -o "$work/bin/" ./cmd/hookgate ./cmd/b24sim ./cmd/receiver

otlp_grpc=$(free_port); otlp_http=$(free_port); query_http=$(free_port); query_grpc=$(free_port); health=$(free_port)
cat >"$work/jaeger.yaml" <<YAML
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:$health
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:$query_http
    grpc:
      endpoint: 127.0.0.1:$query_grpc
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$otlp_grpc
      http:
        endpoint: 127.0.0.1:$otlp_http
processors:
  batch:
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
YAML
log "starting Jaeger: OTLP 127.0.0.1:$otlp_http (HTTP) and :$otlp_grpc (gRPC), query API http://127.0.0.1:$query_http"
"$jaeger" --config "file:$work/jaeger.yaml" >"$work/jaeger.log" 2>&1 &
pids+=($!)
wait_port "$query_http" jaeger
wait_port "$otlp_http" jaeger-otlp

sim=$(free_port); recv=$(free_port); gw=$(free_port); bus=$(free_port)
signing=whsec_dHJhY2VzLWRlbW8tcGxhdGZvcm0ta2V5
"$work/bin/b24sim" -listen "127.0.0.1:$sim" -secret traces0demo0webhook >"$work/b24sim.log" 2>&1 &
pids+=($!)
"$work/bin/receiver" -listen "127.0.0.1:$recv" -secret "$signing" >"$work/receiver.log" 2>&1 &
pids+=($!)
cat >"$work/secrets.yaml" <<YAML
bitrix24/deals-app-token: {token: jvh9y1ulvt2m6k5or90v9mg8nn32ozas}
b24sim/webhook: {token: traces0demo0webhook}
platform/signing: {token: $signing}
YAML
cat >"$work/hookgate.yaml" <<YAML
server: {listen: "127.0.0.1:$gw"}
data_dir: $work/data
secrets: {backend: file, file: $work/secrets.yaml}
bus: {listen: "127.0.0.1:$bus"}
telemetry:
  endpoint: http://127.0.0.1:$otlp_http
  sample_ratio: 1
  service_name: hookgate
sources:
  - {id: bitrix24-deals, provider: bitrix24, secret: bitrix24/deals-app-token}
portals:
  - {id: main, base_url: "http://127.0.0.1:$sim", user_id: 1, secret: b24sim/webhook}
routes:
  - name: deal-sync
    on: {source: bitrix24-deals, event: ONCRMDEALADD}
    call: {portal: main, method: crm.deal.get, params: {id: '{{ param "data[FIELDS][ID]" }}'}}
    deliver: {url: "http://127.0.0.1:$recv/hooks/deals", secret: platform/signing}
YAML
wait_port "$sim" b24sim
wait_port "$recv" receiver
log "starting hookgate on 127.0.0.1:$gw, tracing to Jaeger"
OTEL_BSP_SCHEDULE_DELAY=500 "$work/bin/hookgate" serve --config "$work/hookgate.yaml" >"$work/hookgate.log" 2>&1 &
pids+=($!)
wait_port "$gw" hookgate

answer=$(curl -fsS "http://127.0.0.1:$gw/webhook/bitrix24-deals" \
  -d "event=ONCRMDEALADD&event_handler_id=975&data[FIELDS][ID]=1&ts=$(date +%s)" \
  --data-urlencode 'auth[domain]=some-domain.bitrix24.com' \
  --data-urlencode 'auth[application_token]=jvh9y1ulvt2m6k5or90v9mg8nn32ozas')
echo "posted ONCRMDEALADD for deal 1: $answer"
event=$(printf '%s' "$answer" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
trace=""
for i in $(seq 1 100); do
  trace=$(cat "$work"/data/history/*.ndjson 2>/dev/null | grep -F "\"event_id\":\"$event\"" | grep '"operation":"deliver"' |
    sed -n 's/.*"trace_id":"\([0-9a-f]\{32\}\)".*/\1/p' | head -1 || true)
  [ -n "$trace" ] && break
  sleep 0.2
done
[ -n "$trace" ] || { echo "no delivery with a trace_id in history for event $event" >&2; exit 1; }
echo "event $event: trace $trace (history's trace_id column)"
spans=0
for i in $(seq 1 50); do
  spans=$(curl -fsS "http://127.0.0.1:$query_http/api/traces/$trace" 2>/dev/null | grep -o '"operationName"' | wc -l || true)
  [ "$spans" -ge 6 ] && break
  sleep 0.2
done
echo "Jaeger has $spans spans of it:"
curl -fsS "http://127.0.0.1:$query_http/api/traces/$trace" | grep -o '"operationName":"[^"]*"' | sort | uniq -c
echo
echo "  curl -s http://127.0.0.1:$query_http/api/traces/$trace          # the trace, JSON"
echo "  curl -s 'http://127.0.0.1:$query_http/api/traces?service=hookgate&limit=20'   # the latest ones"
echo "  gateway http://127.0.0.1:$gw  (post more events; each has its trace_id in history)"
if [ -n "$check" ]; then
  [ "$spans" -ge 6 ] || { echo "want at least 6 spans (inbound, publish, route, job, bitrix24, deliver), got $spans" >&2; exit 1; }
  exit 0
fi
echo "Ctrl-C stops Jaeger, hookgate, b24sim and receiver."
wait "${pids[0]}"
