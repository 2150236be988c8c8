#!/usr/bin/env bash
# The load harness of docs/performance.md (task bench). In one run, on this
# machine, on loopback only, it builds hookgate and the bench tools, starts
# Debian's ClickHouse on free ports in a temporary directory, the yardstick
# (a bare Fiber handler) and `hookgate serve` (embedded JetStream, history
# into that ClickHouse, the file secret store), drives both with the same
# generator (bench/cmd/loadbench: 64 keep-alive connections, closed loop,
# every request distinct) through every scenario, prints the table with the
# ratio hookgate / yardstick, and checks that every 200 is in the JetStream
# stream and every answer has its row in ClickHouse, with an empty spool.
# It stops what it started, whatever happens.
#
#   scripts/bench.sh                      all scenarios, ~6 minutes (~8 with BENCH_BASELINE)
#   BENCH_SCENARIOS="bitrix24" scripts/bench.sh
#
# The routing scenario (bench/cmd/routebench) is not a load of the inbound
# path: it runs the hookgate binary (and the baseline's) on its own with a
# route crm.deal.get → a signed delivery against an in-process Bitrix24
# simulator at 2 requests/s, burst 50, posts BENCH_ROUTING_EVENTS (10000)
# ONCRMDEALUPDATE events for BENCH_ROUTING_DEALS (2000) deals and prints
# the events routed per second per portal, measured over at most
# BENCH_ROUTING_WINDOW (2m) after the first was accepted.
#
# Knobs (environment): BENCH_DURATION (measured window per run, default
# 10s), BENCH_WARMUP (2s), BENCH_CONNS (64), BENCH_SCENARIOS, BENCH_SYNC
# (bus.sync: group, the default | interval | always), BENCH_STRACE=1 (count the
# gateway's fsync and fdatasync calls with strace -c -f during the bitrix24
# run, warm-up included, and print them beside the stream's message count:
# fsyncs per stored message; strace stops the process at every system
# call, so that run's req/s and latency are not figures), BENCH_REPEAT (rounds of the bitrix24
# scenario, default 1), BENCH_PERF=1 (record a perf profile of hookgate
# during the bitrix24 run; needs perf), BENCH_PPROF=1 (Go CPU, heap, allocs
# and mutex profiles of that run, from the pprof listener hookgate opens on
# HOOKGATE_PPROF when it has one), BENCH_GATEWAY_ENV="K=V ..." (extra
# environment of the gateways, e.g. GOMEMLIMIT=120MiB or a HOOKGATE_*
# config override such as HOOKGATE_HISTORY_BATCH_ROWS=2000), BENCH_KEEP=DIR (keep results, logs
# and profiles there), BENCH_BASELINE=<git ref or source tree> (also build hookgate
# at that commit, or from that directory, and run it, as "baseline", right after hookgate in every scenario:
# before/after figures from one run), BENCH_PIN=1 (pin the servers under
# test to CPU 0 and the generator and ClickHouse to the other CPUs with
# taskset: each server gets one core of its own, which shows what one
# core serves without the generator and ClickHouse taking from it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. "$root/scripts/lib.sh"
duration=${BENCH_DURATION:-10s}
warmup=${BENCH_WARMUP:-2s}
conns=${BENCH_CONNS:-64}
sync=${BENCH_SYNC:-group}
repeat=${BENCH_REPEAT:-1}
scenarios=${BENCH_SCENARIOS:-"bitrix24 bitrix24-invalid10 standard-2k apikey-multipart bitrix24-1k bitrix24-64k routing"}
work=$(mktemp -d /tmp/hookgate-bench.XXXXXX)
pin_server=() pin_other=()
if [ "${BENCH_PIN:-}" = 1 ]; then
  [ "$(nproc)" -ge 2 ] || { echo "BENCH_PIN=1 needs at least 2 CPUs" >&2; exit 2; }
  command -v taskset >/dev/null || { echo "BENCH_PIN=1 needs taskset (util-linux)" >&2; exit 2; }
  pin_server=(taskset -c 0) pin_other=(taskset -c "1-$(($(nproc) - 1))")
fi
pids=()
log() { printf '== %s\n' "$*" >&2; }

cleanup() {
  local rc=$?
  # newest first: hookgate flushes its history while ClickHouse still runs
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  if [ $rc -ne 0 ]; then
    for f in "$work"/*.log "$work"/ch/err.log; do
      [ -s "$f" ] && { echo "--- tail of $f" >&2; tail -n 20 "$f" >&2; }
    done
  fi
  if [ -n "${BENCH_KEEP:-}" ]; then
    mkdir -p "$BENCH_KEEP"
    cp "$work"/results.jsonl "$work"/*.log "$work"/*.txt "$work"/*.data "$work"/*.yaml "$work"/*.pprof "$BENCH_KEEP"/ 2>/dev/null || true
    cp "$work"/bin/hookgate "$BENCH_KEEP"/ 2>/dev/null || true
    cp "$work"/ch/server.log "$BENCH_KEEP"/clickhouse-server.log 2>/dev/null || true
  fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT INT TERM

# --- machine -----------------------------------------------------------------
log "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg), $(go version | cut -d' ' -f3)"

# --- build -------------------------------------------------------------------
log "building hookgate, loadbench, yardstick"
mkdir -p "$work/bin"
go build -o "$work/bin/hookgate" ./cmd/hookgate
go build -o "$work/bin/loadbench" ./bench/cmd/loadbench
go build -o "$work/bin/yardstick" ./bench/cmd/yardstick
go build -o "$work/bin/routebench" ./bench/cmd/routebench
lb=$work/bin/loadbench

# --- ClickHouse (Debian's clickhouse-server) --------------------------------
chbin=$(clickhouse_server)
# Ports are picked free but others may take them first: retry on new ones.
chdir=$work/ch
mkdir -p "$chdir/tmp" "$chdir/uf" "$chdir/fs"
for attempt in 1 2 3; do
  chtcp=$(free_port); chhttp=$(free_port); chinter=$(free_port)
  log "starting ClickHouse on 127.0.0.1:$chtcp"
  "${pin_other[@]}" "$chbin" --config-file=/etc/clickhouse-server/config.xml -- \
    --path="$chdir/" --tmp_path="$chdir/tmp/" --user_files_path="$chdir/uf/" --format_schema_path="$chdir/fs/" \
    --logger.log="$chdir/server.log" --logger.errorlog="$chdir/err.log" --listen_host=127.0.0.1 \
    --tcp_port="$chtcp" --http_port="$chhttp" --interserver_http_port="$chinter" >"$work/clickhouse.log" 2>&1 &
  chpid=$!
  for i in $(seq 1 300); do
    (exec 3<>/dev/tcp/127.0.0.1/$chtcp) 2>/dev/null && break
    kill -0 "$chpid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$chpid" 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/$chtcp) 2>/dev/null; then
    pids+=($chpid)
    break
  fi
  kill "$chpid" 2>/dev/null || true
  wait "$chpid" 2>/dev/null || true
  [ "$attempt" -lt 3 ] || { echo "ClickHouse did not start" >&2; exit 1; }
done

# --- yardstick -----------------------------------------------------------------
yport=$(free_port)
"${pin_server[@]}" "$work/bin/yardstick" -listen "127.0.0.1:$yport" >"$work/yardstick.log" 2>&1 &
ypid=$!
pids+=($ypid)

# --- hookgate ----------------------------------------------------------------
cat >"$work/secrets.yaml" <<'EOF'
bench/b24:
  token: jvh9y1ulvt2m6k5or90v9mg8nn32ozas
bench/std:
  token: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
bench/crm:
  token: 3f1c9e52-bench-crm-key
EOF
# start_gateway LABEL BINARY DATABASE: hookgate serve on free ports with its
# own data_dir and history database; sets gw_port, gw_bus, gw_pid.
start_gateway() {
  local label=$1 bin=$2 db=$3 i
  gw_port=$(free_port); gw_bus=$(free_port)
  cat >"$work/$label.yaml" <<EOF
server:
  listen: "127.0.0.1:$gw_port"
data_dir: $work/data-$label
secrets:
  backend: file
  file: $work/secrets.yaml
bus:
  listen: "127.0.0.1:$gw_bus"
  sync: $sync
history:
  clickhouse:
    addr: ["127.0.0.1:$chtcp"]
    database: $db
log:
  level: warn
sources:
  - id: b24
    provider: bitrix24
    secret: bench/b24
  - id: std
    provider: standard
    secret: bench/std
  - id: crm
    provider: apikey
    secret: bench/crm
    event: contact.changed
EOF
  log "starting $label on 127.0.0.1:$gw_port (bus 127.0.0.1:$gw_bus, sync $sync, history database $db${gw_env:+, env $gw_env})"
  "${pin_server[@]}" env ${gw_env:-} "$bin" serve --config "$work/$label.yaml" >"$work/$label.log" 2>&1 &
  gw_pid=$!
  pids+=($gw_pid)
  wait_port "$gw_port" "$label"
  for i in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$gw_port/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
}
pprof=""
gw_env=${BENCH_GATEWAY_ENV:-}
if [ "${BENCH_PPROF:-}" = 1 ]; then
  pprof=127.0.0.1:$(free_port)
  gw_env="$gw_env HOOKGATE_PPROF=$pprof"
fi
start_gateway hookgate "$work/bin/hookgate" hookgate
gw_env=${BENCH_GATEWAY_ENV:-}
hport=$gw_port; hbus=$gw_bus; hpid=$gw_pid
for i in 1 2 3 4 5; do
  [ -z "$pprof" ] || curl -fsS "http://$pprof/debug/pprof/" >/dev/null 2>&1 && break
  sleep 0.5
done
if [ -n "$pprof" ] && ! curl -fsS "http://$pprof/debug/pprof/" >/dev/null 2>&1; then
  log "BENCH_PPROF=1 but hookgate has no pprof listener on HOOKGATE_PPROF (docs/performance.md): no Go profiles"
  pprof=""
fi
if [ -n "${BENCH_BASELINE:-}" ]; then
  # the same gateway at another commit, run beside the current one: before
  # and after figures from the same minutes of the same machine
  log "building hookgate at $BENCH_BASELINE"
  if [ -d "$BENCH_BASELINE" ]; then
    (cd "$BENCH_BASELINE" && go build -o "$work/bin/hookgate-base" ./cmd/hookgate)
  else
    mkdir -p "$work/base"
    git -C "$root" archive "$BENCH_BASELINE" | tar -x -C "$work/base"
    (cd "$work/base" && go build -o "$work/bin/hookgate-base" ./cmd/hookgate)
  fi
  start_gateway baseline "$work/bin/hookgate-base" hookgate_baseline
  bport=$gw_port; bbus=$gw_bus; bpid=$gw_pid
fi
wait_port "$yport" yardstick

# --- runs --------------------------------------------------------------------
# Per scenario: the yardstick, then hookgate, back to back, so that each
# ratio is taken from one minute of the same machine.
results=$work/results.jsonl
bench_one() { # label url pid scenario [extra flags]
  local label=$1 url=$2 pid=$3 sc=$4; shift 4
  "${pin_other[@]}" timeout 120 "$lb" run -url "$url" -scenario "$sc" -label "$label" -pid "$pid" \
    -c "$conns" -d "$duration" -warmup "$warmup" -out "$results" "$@"
}
for round in $(seq 1 "$repeat"); do
  for sc in $scenarios; do
    if [ "$round" -gt 1 ] && [ "$sc" != bitrix24 ]; then continue; fi
    if [ "$sc" = routing ]; then continue; fi # below, on its own
    bench_one yardstick "http://127.0.0.1:$yport" "$ypid" "$sc"
    perfpid=""; cpupid=""
    if [ "$sc" = "${BENCH_PROFILE_SCENARIO:-bitrix24}" ] && [ "$round" = 1 ]; then
      if [ "${BENCH_PERF:-}" = 1 ] && command -v perf >/dev/null; then
        perf record -q -F 499 -g -p "$hpid" -o "$work/perf-hookgate.data" -- sleep 12 >/dev/null 2>&1 &
        perfpid=$!
      fi
      if [ -n "$pprof" ]; then
        curl -fsS -o "$work/cpu.pprof" "http://$pprof/debug/pprof/profile?seconds=8" &
        cpupid=$!
      fi
    fi
    stracepid=""
    if [ "${BENCH_STRACE:-}" = 1 ] && [ "$sc" = bitrix24 ] && [ "$round" = 1 ]; then
      command -v strace >/dev/null || { echo "BENCH_STRACE=1 needs strace" >&2; exit 2; }
      strace -c -f -e trace=fsync,fdatasync -p "$hpid" -o "$work/strace-hookgate.txt" 2>/dev/null &
      stracepid=$!
      sleep 1
    fi
    bench_one hookgate "http://127.0.0.1:$hport" "$hpid" "$sc" -aux-pid "$chpid"
    if [ -n "$stracepid" ]; then
      kill -INT "$stracepid" 2>/dev/null || true
      wait "$stracepid" 2>/dev/null || true
    fi
    if [ -n "$cpupid" ]; then
      wait "$cpupid" || true
      for p in heap allocs mutex goroutine; do curl -fsS -o "$work/$p.pprof" "http://$pprof/debug/pprof/$p" || true; done
    fi
    if [ -n "$perfpid" ]; then
      wait "$perfpid" || true
      perf report -i "$work/perf-hookgate.data" --no-children --sort symbol -g none --stdio 2>/dev/null | grep -v '^$' | head -80 >"$work/perf-hookgate.txt" || true
    fi
    if [ -n "${BENCH_BASELINE:-}" ]; then
      bench_one baseline "http://127.0.0.1:$bport" "$bpid" "$sc" -aux-pid "$chpid"
    fi
  done
done

routing_one() { # label binary
  "${pin_other[@]}" timeout 600 "$work/bin/routebench" -hookgate "$2" -label "$1" \
    -events "${BENCH_ROUTING_EVENTS:-10000}" -deals "${BENCH_ROUTING_DEALS:-2000}" \
    -window "${BENCH_ROUTING_WINDOW:-2m}" >>"$work/routing.txt"
}
if [[ " $scenarios " == *" routing "* ]]; then
  log "routing: ${BENCH_ROUTING_EVENTS:-10000} events through a crm.deal.get route at 2 req/s"
  routing_one hookgate "$work/bin/hookgate"
  if [ -n "${BENCH_BASELINE:-}" ]; then
    routing_one baseline "$work/bin/hookgate-base"
  fi
fi

if [ -s "$results" ]; then
  echo
  echo "hookgate vs yardstick: $conns connections, ${duration} measured after ${warmup} warm-up, bus.sync=$sync, $(nproc) cores"
  "$lb" report -results "$results"
fi
if [ -s "$work/routing.txt" ]; then
  echo
  echo "routing (Bitrix24 portal at 2 requests/s, burst 50):"
  cat "$work/routing.txt"
fi
[ -s "$results" ] || exit 0 # routing only: nothing posted to the gateways above
echo
"$lb" report -results "$results" -md >"$work/results.txt"

# --- durability and history checks -------------------------------------------
log "checking JetStream and ClickHouse against the answers"
vrc=0
verify_gateway() { # label bus pid database
  local label=$1 bus=$2 pid=$3 db=$4
  echo "-- $label"
  # the embedded bus wants the token its gateway wrote under data_dir (a
  # baseline from before the token has none)
  local tok; tok=$(cat "$work/data-$label/bus.token" 2>/dev/null || true)
  "$lb" verify -results "$results" -label "$label" -nats "nats://${tok:+$tok@}127.0.0.1:$bus" \
    -clickhouse "127.0.0.1:$chtcp" -db "$db" -spool "$work/data-$label/history/spool" -wait 60s || vrc=1
  echo "$label peak RSS over the whole run (VmHWM): $(awk '/VmHWM/ {printf "%.0f MB", $2/1024}' "/proc/$pid/status")"
  if grep -qiE 'level=(WARN|ERROR)' "$work/$label.log"; then
    echo "$label warnings during the run:"
    grep -iE 'level=(WARN|ERROR)' "$work/$label.log" | cut -c1-300 | sort | uniq -c | sort -rn | head -10
  fi
}
verify_gateway hookgate "$hbus" "$hpid" hookgate
if [ -s "$work/strace-hookgate.txt" ]; then
  echo "hookgate fsyncs during the bitrix24 run (strace -c -f; the stream count above is every message stored):"
  cat "$work/strace-hookgate.txt"
fi
if [ -n "${BENCH_BASELINE:-}" ]; then
  verify_gateway baseline "$bbus" "$bpid" hookgate_baseline
fi
exit $vrc
