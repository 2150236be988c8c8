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
#   scripts/bench.sh                      all scenarios and the levels, ~5½ minutes
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
# In the bitrix24 scenario it also measures the durability levels side by
# side (BENCH_LEVELS): beside hookgate (bus.sync group, the default) one
# gateway each with bus.sync interval and always, and one on a three-node
# nats-server cluster with R3 streams (bus.url + bus.replicas: 3), in
# every round, in an order that rotates from round to round (the
# yardstick first, for the ratios); with perf or strace present every server
# under test runs under a counter of its fsync and fdatasync calls,
# and each run reports its fsyncs per stored message (the cluster's: all
# three nats-servers and the gateway), counted by perf stat on the syscall
# tracepoints (or strace when perf cannot).
#
# Knobs (environment): BENCH_DURATION (measured window per run, default
# 10s), BENCH_WARMUP (2s), BENCH_CONNS (64), BENCH_SCENARIOS, BENCH_SYNC
# (bus.sync of "hookgate": group, the default | interval | always),
# BENCH_LEVELS (the other levels run in the bitrix24 scenario, default
# "interval always r3"; "" for none; also "group" when BENCH_SYNC is
# another, and "r3-always": a second cluster whose servers have
# sync_interval: always), BENCH_FSYNCS (auto, the default: perf stat on
# the syscall tracepoints when it can, which never stops the process, else
# strace -f --seccomp-bpf, which stops it at each fsync: 15-20 % off group's
# rate in BenchmarkPublishSync, 25-70 % off always' | perf | strace | 0:
# no count; BENCH_STRACE=1 means strace), BENCH_REPEAT (rounds of the bitrix24
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
# core serves without the generator and ClickHouse taking from it),
# BENCH_TRACES=1 (also run hookgate with tracing on, as "traced": 100 %
# sampling, OTLP/HTTP to bench/cmd/otlpsink on loopback, beside hookgate
# in every scenario; the sink's CPU is printed at the end).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. "$root/scripts/lib.sh"
duration=${BENCH_DURATION:-10s}
warmup=${BENCH_WARMUP:-2s}
conns=${BENCH_CONNS:-64}
sync=${BENCH_SYNC:-group}
repeat=${BENCH_REPEAT:-1}
levels=${BENCH_LEVELS-"interval always r3"}
for lv in $levels; do
  case $lv in
  interval | always | group | r3 | r3-always) ;;
  *) echo "BENCH_LEVELS: unknown level $lv (want interval, always, group, r3, r3-always)" >&2; exit 2 ;;
  esac
  [ "$lv" != "$sync" ] || { echo "BENCH_LEVELS: $lv is hookgate's own bus.sync (BENCH_SYNC)" >&2; exit 2; }
done
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

# --- fsync counting ----------------------------------------------------------
# trace_label=L trace_exe=BIN traced CMD...: run CMD (which ends up
# executing BIN: through env or taskset) in the background, its fsync and
# fdatasync calls (all its threads) counted into $work/fsync-L.txt: with
# perf stat on the syscall tracepoints (kernel counters printed every
# 100 ms: the process is never stopped), or with strace (one line per
# call; the seccomp filter stops the process at those calls only); sets
# bg_pid to the process itself (not perf or strace) and appends to pids
# what cleanup must stop.
fsync_tool=""
fsync_events=syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync
perf_ok() { command -v perf >/dev/null && perf stat -e "$fsync_events" -x, -o /dev/null -- true >/dev/null 2>&1; }
strace_ok() {
  # (strace warns and stops at every call when it cannot use seccomp:
  # that would slow the servers, so it counts as no strace)
  local out
  command -v strace >/dev/null && out=$(strace -f --seccomp-bpf -qq -e trace=fsync -o /dev/null true 2>&1) && [ -z "$out" ]
}
want_tool=${BENCH_FSYNCS:-auto}
[ "${BENCH_STRACE:-}" != 1 ] || want_tool=strace
case $want_tool in
0) ;;
auto)
  if perf_ok; then fsync_tool=perf
  elif strace_ok; then fsync_tool=strace
  else log "neither perf (syscall tracepoints) nor strace --seccomp-bpf here: fsyncs are not counted (apt-get install linux-perf or strace)"
  fi ;;
perf) perf_ok || { echo "BENCH_FSYNCS=perf: perf stat cannot count $fsync_events here (perf_event_paranoid, tracefs)" >&2; exit 2; }; fsync_tool=perf ;;
strace) strace_ok || { echo "BENCH_FSYNCS=strace needs strace with --seccomp-bpf (apt-get install strace) and ptrace allowed" >&2; exit 2; }; fsync_tool=strace ;;
*) echo "BENCH_FSYNCS: want auto, perf, strace or 0" >&2; exit 2 ;;
esac
traced() {
  if [ -n "$fsync_tool" ]; then
    : >"$work/fsync-$trace_label.txt"
    if [ "$fsync_tool" = perf ]; then
      perf stat -e "$fsync_events" -I 100 -x, -o "$work/fsync-$trace_label.txt" -- "$@" &
    else
      strace -f --seccomp-bpf -qq -e trace=fsync,fdatasync -e signal=none -o "$work/fsync-$trace_label.txt" "$@" &
    fi
    local spid=$! i p want
    pids+=("$spid")
    # the process is the counter's child once it runs trace_exe (strace
    # forks short-lived children of its own while it starts)
    want=$(readlink -f "$trace_exe")
    bg_pid=""
    for i in $(seq 1 200); do
      for p in $(pgrep -P "$spid" || true); do
        [ "$(readlink -f "/proc/$p/exe" 2>/dev/null)" = "$want" ] && bg_pid=$p
      done
      [ -n "$bg_pid" ] && break
      kill -0 "$spid" 2>/dev/null || break
      sleep 0.05
    done
    [ -n "$bg_pid" ] || { echo "$fsync_tool did not start $trace_exe" >&2; exit 1; }
    pids+=("$bg_pid")
  else
    "$@" &
    bg_pid=$!
    pids+=("$bg_pid")
  fi
}

cleanup() {
  local rc=$?
  # newest first: hookgate flushes its history while ClickHouse still runs
  # (a traced process is not this shell's child: wait for it by polling)
  local i j p
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    p=${pids[$i]}
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    for j in $(seq 1 300); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
  done
  if [ $rc -ne 0 ]; then
    for f in "$work"/*.log "$work"/ch/err.log; do
      [ -s "$f" ] && { echo "--- tail of $f" >&2; tail -n 20 "$f" >&2; }
    done
  fi
  if [ -n "${BENCH_KEEP:-}" ]; then
    mkdir -p "$BENCH_KEEP"
    cp "$work"/results.jsonl "$work"/*.log "$work"/*.txt "$work"/*.conf "$work"/*.data "$work"/*.yaml "$work"/*.pprof "$BENCH_KEEP"/ 2>/dev/null || true
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
if [ "${BENCH_TRACES:-}" = 1 ]; then go build -o "$work/bin/otlpsink" ./bench/cmd/otlpsink; fi
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
# start_gateway LABEL BINARY DATABASE [SYNC [BUS_URL]]: hookgate serve on free
# ports with its own data_dir and history database, its embedded bus with
# bus.sync SYNC (default $sync), or the external bus BUS_URL with three
# replicas; sets gw_port, gw_bus (the bus URL verify connects to), gw_pid.
start_gateway() {
  local label=$1 bin=$2 db=$3 gsync=${4:-$sync} url=${5:-} i busyaml
  gw_port=$(free_port)
  if [ -n "$url" ]; then
    busyaml="  url: \"$url\"
  replicas: 3"
    gw_bus=$url
  else
    local bport; bport=$(free_port)
    busyaml="  listen: \"127.0.0.1:$bport\"
  sync: $gsync"
    gw_bus=127.0.0.1:$bport
  fi
  cat >"$work/$label.yaml" <<EOF
server:
  listen: "127.0.0.1:$gw_port"
data_dir: $work/data-$label
secrets:
  backend: file
  file: $work/secrets.yaml
bus:
$busyaml
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
  log "starting $label on 127.0.0.1:$gw_port (bus ${url:-$gw_bus, sync $gsync}, history database $db${gw_env:+, env $gw_env})"
  trace_label=$label trace_exe=$bin traced "${pin_server[@]}" env ${gw_env:-} "$bin" serve --config "$work/$label.yaml" >"$work/$label.log" 2>&1
  gw_pid=$bg_pid
  wait_port "$gw_port" "$label"
  for i in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$gw_port/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
}

# nats_server_bin prints a nats-server binary: on the PATH, or the one
# scripts/test.sh builds into its cache (built here when missing).
nats_server_bin() {
  local bin cache=${HOOKGATE_CACHE:-$HOME/.cache/hookgate} tmp
  bin=$(command -v nats-server || true)
  if [ -z "$bin" ]; then
    bin=$cache/bin/nats-server-v2.15.2
    if [ ! -x "$bin" ]; then
      log "building nats-server v2.15.2"
      mkdir -p "$cache/bin"; tmp=$(mktemp -d)
      GOBIN=$tmp GOSUMDB=off GOFLAGS=-mod=mod go install github.com/nats-io/nats-server/v2@v2.15.2 >&2
      mv "$tmp/nats-server" "$bin"; rm -rf "$tmp"
    fi
  fi
  echo "$bin"
}

# start_cluster NAME [SYNC]: three nats-servers NAME-0..2 with JetStream on
# loopback, one cluster, each with its own store and the server's defaults
# (sync_interval 2 min: a cluster deployed without tuning), or
# sync_interval SYNC; waits until each one's /healthz says its JetStream is
# current; sets r3_url and r3_pids (",pid,pid,pid").
start_cluster() {
  local name=$1 syncopt=${2:+  sync_interval: $2} natsbin i j ports=() cports=() mports=() routes="" urls=""
  natsbin=$(nats_server_bin)
  for i in 0 1 2; do
    ports+=("$(free_port)"); cports+=("$(free_port)"); mports+=("$(free_port)")
  done
  for i in 0 1 2; do
    routes="$routes${routes:+, }\"nats://127.0.0.1:${cports[$i]}\""
    urls="$urls${urls:+,}nats://127.0.0.1:${ports[$i]}"
  done
  r3_pids=""
  for i in 0 1 2; do
    cat >"$work/$name-$i.conf" <<EOF
server_name: $name-$i
listen: 127.0.0.1:${ports[$i]}
http: 127.0.0.1:${mports[$i]}
max_payload: 8MB
jetstream {
  store_dir: "$work/$name-$i"
  max_memory_store: 256MB
$syncopt
}
cluster {
  name: $name
  listen: 127.0.0.1:${cports[$i]}
  routes: [$routes]
}
EOF
    log "starting nats-server $name-$i on 127.0.0.1:${ports[$i]} (cluster $name${2:+, sync_interval $2})"
    trace_label=$name-$i trace_exe=$natsbin traced "${pin_server[@]}" "$natsbin" -c "$work/$name-$i.conf" >"$work/$name-$i.log" 2>&1
    r3_pids="$r3_pids,$bg_pid"
  done
  for i in 0 1 2; do
    wait_port "${ports[$i]}" "nats-server $name-$i"
  done
  for i in 0 1 2; do
    for j in $(seq 1 300); do
      curl -fsS "http://127.0.0.1:${mports[$i]}/healthz" >/dev/null 2>&1 && break
      [ "$j" -lt 300 ] || { echo "nats-server $name-$i: JetStream not healthy after 60 s" >&2; exit 1; }
      sleep 0.2
    done
  done
  r3_url=$urls
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
# the durability levels, each its own gateway (and cluster)
declare -A lv_port lv_bus lv_pid
for lv in $levels; do
  if [ "$lv" = r3 ] || [ "$lv" = r3-always ]; then
    # r3-always: the servers fsync every message (sync_interval: always)
    if [ "$lv" = r3-always ]; then start_cluster "$lv" always; else start_cluster "$lv"; fi
    start_gateway "$lv" "$work/bin/hookgate" "hookgate_${lv//-/_}" "" "$r3_url"
    lv_pid[$lv]=$gw_pid$r3_pids # CPU: the gateway and its three servers
  else
    start_gateway "$lv" "$work/bin/hookgate" "hookgate_$lv" "$lv"
    lv_pid[$lv]=$gw_pid
  fi
  lv_port[$lv]=$gw_port; lv_bus[$lv]=$gw_bus
done
if [ "${BENCH_TRACES:-}" = 1 ]; then
  # the same gateway with every event traced, exporting to a local sink
  sinkport=$(free_port)
  "${pin_other[@]}" "$work/bin/otlpsink" -listen "127.0.0.1:$sinkport" >"$work/otlpsink.log" 2>&1 &
  sinkpid=$!
  pids+=($sinkpid)
  wait_port "$sinkport" otlpsink
  gw_env="${BENCH_GATEWAY_ENV:-} HOOKGATE_TELEMETRY_ENDPOINT=http://127.0.0.1:$sinkport HOOKGATE_TELEMETRY_SAMPLE_RATIO=1"
  start_gateway traced "$work/bin/hookgate" hookgate_traced
  gw_env=${BENCH_GATEWAY_ENV:-}
  lv_port[traced]=$gw_port; lv_bus[traced]=$gw_bus; lv_pid[traced]=$gw_pid
fi
# fsync_files LABEL...: the strace output files of those servers, as
# loadbench's -fsyncs flag wants them (none when not counting)
fsync_files() {
  [ -n "$fsync_tool" ] || return 0
  local f="" l
  for l in "$@"; do f="$f${f:+,}$work/fsync-$l.txt"; done
  echo "-fsyncs=$f"
}
wait_port "$yport" yardstick

# --- runs --------------------------------------------------------------------
# Per scenario: the yardstick, then hookgate, back to back, so that each
# ratio is taken from one minute of the same machine; in the bitrix24
# scenario the durability levels too.
results=$work/results.jsonl
bench_one() { # label url pid scenario [extra flags]
  local label=$1 url=$2 pid=$3 sc=$4; shift 4
  "${pin_other[@]}" timeout 120 "$lb" run -url "$url" -scenario "$sc" -label "$label" -pid "$pid" \
    -c "$conns" -d "$duration" -warmup "$warmup" -out "$results" "$@"
}
# run_server LABEL SCENARIO ROUND: one run of one gateway (hookgate with
# the profilers of BENCH_PERF and BENCH_PPROF in the profiled scenario's
# first round)
run_server() {
  local label=$1 sc=$2 round=$3 perfpid="" cpupid="" p
  case $label in
  hookgate)
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
    bench_one hookgate "http://127.0.0.1:$hport" "$hpid" "$sc" -aux-pid "$chpid" $(fsync_files hookgate)
    if [ -n "$cpupid" ]; then
      wait "$cpupid" || true
      for p in heap allocs mutex goroutine; do curl -fsS -o "$work/$p.pprof" "http://$pprof/debug/pprof/$p" || true; done
    fi
    if [ -n "$perfpid" ]; then
      wait "$perfpid" || true
      perf report -i "$work/perf-hookgate.data" --no-children --sort symbol -g none --stdio 2>/dev/null | grep -v '^$' | head -80 >"$work/perf-hookgate.txt" || true
    fi ;;
  baseline)
    bench_one baseline "http://127.0.0.1:$bport" "$bpid" "$sc" -aux-pid "$chpid" $(fsync_files baseline) ;;
  r3 | r3-always)
    bench_one "$label" "http://127.0.0.1:${lv_port[$label]}" "${lv_pid[$label]}" "$sc" -aux-pid "$chpid" $(fsync_files "$label" "$label-0" "$label-1" "$label-2") ;;
  *)
    bench_one "$label" "http://127.0.0.1:${lv_port[$label]}" "${lv_pid[$label]}" "$sc" -aux-pid "$chpid" $(fsync_files "$label") ;;
  esac
}
# The order after the yardstick: hookgate, the baseline, the levels (in
# the bitrix24 scenario); from round to round it rotates by one, so that
# no server always runs first or last after the yardstick.
servers=(hookgate)
[ -z "${BENCH_BASELINE:-}" ] || servers+=(baseline)
[ "${BENCH_TRACES:-}" != 1 ] || servers+=(traced)
for round in $(seq 1 "$repeat"); do
  for sc in $scenarios; do
    if [ "$round" -gt 1 ] && [ "$sc" != bitrix24 ]; then continue; fi
    if [ "$sc" = routing ]; then continue; fi # below, on its own
    order=("${servers[@]}")
    if [ "$sc" = bitrix24 ]; then
      # shellcheck disable=SC2206
      order+=($levels)
      k=$(((round - 1) % ${#order[@]}))
      order=("${order[@]:k}" "${order[@]:0:k}")
    fi
    bench_one yardstick "http://127.0.0.1:$yport" "$ypid" "$sc"
    for label in "${order[@]}"; do
      run_server "$label" "$sc" "$round"
    done
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
if [ -s "$work/routing.txt" ]; then
  echo
  echo "routing (Bitrix24 portal at 2 requests/s, burst 50):"
  cat "$work/routing.txt"
fi
[ -s "$results" ] || exit 0 # routing only: nothing posted to the gateways above

echo
echo "hookgate vs yardstick: $conns connections, ${duration} measured after ${warmup} warm-up, hookgate with bus.sync=$sync${levels:+, and the levels $levels in bitrix24 (r3: three nats-servers, R3 streams, r3-always the same with sync_interval always; the order after the yardstick rotates each round)}, $(nproc) cores, load average now $(cut -d' ' -f1-3 /proc/loadavg)"
"$lb" report -results "$results"
echo
"$lb" report -results "$results" -md >"$work/results.txt"

# --- durability and history checks -------------------------------------------
log "checking JetStream and ClickHouse against the answers"
vrc=0
verify_gateway() { # label bus pid database
  local label=$1 bus=$2 pid=$3 db=$4 url
  echo "-- $label"
  # the embedded bus wants the token its gateway wrote under data_dir (a
  # baseline from before the token has none); an external one is a URL
  local tok; tok=$(cat "$work/data-$label/bus.token" 2>/dev/null || true)
  case $bus in
  nats://*) url=$bus ;;
  *) url=nats://${tok:+$tok@}$bus ;;
  esac
  "$lb" verify -results "$results" -label "$label" -nats "$url" \
    -clickhouse "127.0.0.1:$chtcp" -db "$db" -spool "$work/data-$label/history/spool" -wait 60s || vrc=1
  echo "$label peak RSS over the whole run (VmHWM): $(awk '/VmHWM/ {printf "%.0f MB", $2/1024}' "/proc/$pid/status")"
  if grep -qiE 'level=(WARN|ERROR)' "$work/$label.log"; then
    echo "$label warnings during the run:"
    grep -iE 'level=(WARN|ERROR)' "$work/$label.log" | cut -c1-300 | sort | uniq -c | sort -rn | head -10
  fi
}
verify_gateway hookgate "$hbus" "$hpid" hookgate
if [ -n "${BENCH_BASELINE:-}" ]; then
  verify_gateway baseline "$bbus" "$bpid" hookgate_baseline
fi
for lv in $levels; do
  verify_gateway "$lv" "${lv_bus[$lv]}" "${lv_pid[$lv]%%,*}" "hookgate_${lv//-/_}"
done
if [ "${BENCH_TRACES:-}" = 1 ]; then
  verify_gateway traced "${lv_bus[traced]}" "${lv_pid[traced]}" hookgate_traced
  echo "traced: $(curl -fsS "http://127.0.0.1:$sinkport/count"); sink CPU over the whole run $(awk '{printf "%.1f s", ($14+$15)/100}' "/proc/$sinkpid/stat")"
fi
exit $vrc
