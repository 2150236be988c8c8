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
#   scripts/bench.sh                      all scenarios, ~4 minutes
#   BENCH_SCENARIOS="bitrix24" scripts/bench.sh
#
# Knobs (environment): BENCH_DURATION (measured window per run, default
# 10s), BENCH_WARMUP (2s), BENCH_CONNS (64), BENCH_SCENARIOS, BENCH_SYNC
# (bus.sync: interval | always), BENCH_REPEAT (rounds of the bitrix24
# scenario, default 1), BENCH_PERF=1 (record a perf profile of hookgate
# during the bitrix24 run; needs perf), BENCH_KEEP=DIR (keep results, logs
# and profiles there).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
duration=${BENCH_DURATION:-10s}
warmup=${BENCH_WARMUP:-2s}
conns=${BENCH_CONNS:-64}
sync=${BENCH_SYNC:-interval}
repeat=${BENCH_REPEAT:-1}
scenarios=${BENCH_SCENARIOS:-"bitrix24 bitrix24-invalid10 standard-2k apikey-multipart bitrix24-1k bitrix24-64k"}
work=$(mktemp -d /tmp/hookgate-bench.XXXXXX)
pids=()
log() { printf '== %s\n' "$*" >&2; }

cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ $rc -ne 0 ]; then
    for f in "$work"/*.log "$work"/ch/err.log; do
      [ -s "$f" ] && { echo "--- tail of $f" >&2; tail -n 20 "$f" >&2; }
    done
  fi
  if [ -n "${BENCH_KEEP:-}" ]; then
    mkdir -p "$BENCH_KEEP"
    cp "$work"/results.jsonl "$work"/*.log "$work"/*.txt "$work"/*.data "$BENCH_KEEP"/ 2>/dev/null || true
  fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT INT TERM

free_port() {
  local p
  while :; do
    p=$(( (RANDOM * 32768 + RANDOM) % 30000 + 20000 ))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
  done
}

wait_port() {
  local i
  for i in $(seq 1 300); do
    if (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "port $1 never opened ($2)" >&2
  return 1
}

# --- machine -----------------------------------------------------------------
log "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg), $(go version | cut -d' ' -f3)"

# --- build -------------------------------------------------------------------
log "building hookgate, loadbench, yardstick"
mkdir -p "$work/bin"
go build -o "$work/bin/hookgate" ./cmd/hookgate
go build -o "$work/bin/loadbench" ./bench/cmd/loadbench
go build -o "$work/bin/yardstick" ./bench/cmd/yardstick
lb=$work/bin/loadbench

# --- ClickHouse (Debian's clickhouse-server) --------------------------------
chbin=$(command -v clickhouse-server || true)
[ -n "$chbin" ] || [ ! -x /usr/sbin/clickhouse-server ] || chbin=/usr/sbin/clickhouse-server
if [ -z "$chbin" ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing clickhouse-server from Debian"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
  chbin=/usr/sbin/clickhouse-server
fi
chdir=$work/ch
mkdir -p "$chdir/tmp" "$chdir/uf" "$chdir/fs"
chtcp=$(free_port); chhttp=$(free_port); chinter=$(free_port)
log "starting ClickHouse on 127.0.0.1:$chtcp"
"$chbin" --config-file=/etc/clickhouse-server/config.xml -- \
  --path="$chdir/" --tmp_path="$chdir/tmp/" --user_files_path="$chdir/uf/" --format_schema_path="$chdir/fs/" \
  --logger.log="$chdir/server.log" --logger.errorlog="$chdir/err.log" --listen_host=127.0.0.1 \
  --tcp_port="$chtcp" --http_port="$chhttp" --interserver_http_port="$chinter" >"$work/clickhouse.log" 2>&1 &
chpid=$!
pids+=($chpid)
wait_port "$chtcp" clickhouse

# --- yardstick -----------------------------------------------------------------
yport=$(free_port)
"$work/bin/yardstick" -listen "127.0.0.1:$yport" >"$work/yardstick.log" 2>&1 &
ypid=$!
pids+=($ypid)

# --- hookgate ----------------------------------------------------------------
hport=$(free_port); bport=$(free_port)
cat >"$work/secrets.yaml" <<'EOF'
bench/b24:
  token: jvh9y1ulvt2m6k5or90v9mg8nn32ozas
bench/std:
  token: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
bench/crm:
  token: 3f1c9e52-bench-crm-key
EOF
cat >"$work/hookgate.yaml" <<EOF
server:
  listen: "127.0.0.1:$hport"
data_dir: $work/data
secrets:
  backend: file
  file: $work/secrets.yaml
bus:
  listen: "127.0.0.1:$bport"
  sync: $sync
history:
  clickhouse:
    addr: ["127.0.0.1:$chtcp"]
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
log "starting hookgate on 127.0.0.1:$hport (bus 127.0.0.1:$bport, sync $sync)"
"$work/bin/hookgate" serve --config "$work/hookgate.yaml" >"$work/hookgate.log" 2>&1 &
hpid=$!
pids+=($hpid)
wait_port "$hport" hookgate
wait_port "$yport" yardstick
for i in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$hport/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done

# --- runs --------------------------------------------------------------------
# Per scenario: the yardstick, then hookgate, back to back, so that each
# ratio is taken from one minute of the same machine.
results=$work/results.jsonl
bench_one() { # label url pid scenario [extra flags]
  local label=$1 url=$2 pid=$3 sc=$4; shift 4
  timeout 120 "$lb" run -url "$url" -scenario "$sc" -label "$label" -pid "$pid" \
    -c "$conns" -d "$duration" -warmup "$warmup" -out "$results" "$@"
}
for round in $(seq 1 "$repeat"); do
  for sc in $scenarios; do
    if [ "$round" -gt 1 ] && [ "$sc" != bitrix24 ]; then continue; fi
    bench_one yardstick "http://127.0.0.1:$yport" "$ypid" "$sc"
    perfpid=""
    if [ "${BENCH_PERF:-}" = 1 ] && [ "$sc" = bitrix24 ] && [ "$round" = 1 ] && command -v perf >/dev/null; then
      perf record -q -F 499 -g -p "$hpid" -o "$work/perf-hookgate.data" -- sleep 12 >/dev/null 2>&1 &
      perfpid=$!
    fi
    bench_one hookgate "http://127.0.0.1:$hport" "$hpid" "$sc" -aux-pid "$chpid"
    if [ -n "$perfpid" ]; then
      wait "$perfpid" || true
      perf report -i "$work/perf-hookgate.data" --no-children --sort symbol --stdio 2>/dev/null | grep -v '^$' | head -60 >"$work/perf-hookgate.txt" || true
    fi
  done
done

echo
echo "hookgate vs yardstick: $conns connections, ${duration} measured after ${warmup} warm-up, bus.sync=$sync, $(nproc) cores"
"$lb" report -results "$results"
echo
"$lb" report -results "$results" -md >"$work/results.txt"

# --- durability and history checks -------------------------------------------
log "checking JetStream and ClickHouse against the answers"
vrc=0
"$lb" verify -results "$results" -label hookgate -nats "nats://127.0.0.1:$bport" \
  -clickhouse "127.0.0.1:$chtcp" -spool "$work/data/history/spool" -wait 60s || vrc=$?
echo "hookgate peak RSS over the whole run (VmHWM): $(awk '/VmHWM/ {printf "%.0f MB", $2/1024}' /proc/$hpid/status)"
if grep -qiE 'level=(WARN|ERROR)' "$work/hookgate.log"; then
  echo "hookgate warnings during the run:"; grep -iE 'level=(WARN|ERROR)' "$work/hookgate.log" | sort | uniq -c | sort -rn | head -10
fi
exit $vrc
