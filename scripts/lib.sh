# Shell helpers shared by scripts/test.sh and scripts/bench.sh (sourced).

# free_port prints a loopback TCP port nobody listens on, below Linux's
# ephemeral range (32768 and up by default): a port from that range can be
# taken by an outgoing connection between this check and the listen.
free_port() {
  local p
  while :; do
    p=$(( (RANDOM * 32768 + RANDOM) % 12000 + 20000 ))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
  done
}

# wait_port PORT WHAT waits until 127.0.0.1:PORT accepts connections.
wait_port() {
  local i
  for i in $(seq 1 300); do
    if (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "port $1 never opened ($2)" >&2
  return 1
}

# clickhouse_server prints the path of Debian's clickhouse-server,
# installing the package first when it is missing.
clickhouse_server() {
  local bin sudo=""
  bin=$(command -v clickhouse-server || true)
  [ -n "$bin" ] || [ ! -x /usr/sbin/clickhouse-server ] || bin=/usr/sbin/clickhouse-server
  if [ -z "$bin" ]; then
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "== installing clickhouse-server from Debian" >&2
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
    bin=/usr/sbin/clickhouse-server
  fi
  echo "$bin"
}
