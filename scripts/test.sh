#!/usr/bin/env bash
# The whole test suite, on a fresh machine (Go installed, root, package
# registries reachable). It installs what is missing — Debian's
# clickhouse-server and chromium, Vault 1.20.4 built from the Go module proxy,
# nats-server, the Node packages of independent implementations and
# playwright-core — starts ClickHouse and
# Vault as child processes on free loopback ports in a temporary directory,
# runs vet, the race-enabled tests and a short fuzz pass, and stops the
# servers again, whatever happens.
#
#   scripts/test.sh                 everything
#   scripts/test.sh -run TestX ./gateway/   go test with these arguments only (servers still started)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. "$root/scripts/lib.sh"
cache=${HOOKGATE_CACHE:-$HOME/.cache/hookgate}
mkdir -p "$cache/bin"
work=$(mktemp -d /tmp/hookgate-test.XXXXXX)
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
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT INT TERM

# --- command-line tools the quickstart test runs (docs/quickstart.md), and
# Debian's chromium, the browser of the console test (docs/console.md) -------
missing=()
for tool in curl openssl xxd chromium; do command -v "$tool" >/dev/null || missing+=("$tool"); done
# Node.js and npm run the independent implementations and the browser driver
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} from Debian"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- ClickHouse (Debian's clickhouse-server) --------------------------------
chbin=$(clickhouse_server)

# --- Vault (built from the Go module proxy, cached) --------------------------
log "vault binary"
vaultbin=$("$root/scripts/build-vault.sh")

# --- nats-server (for external-bus tests) ------------------------------------
natsbin=$(command -v nats-server || true)
if [ -z "$natsbin" ]; then
  natsbin=$cache/bin/nats-server-v2.15.2
  if [ ! -x "$natsbin" ]; then
    log "building nats-server v2.15.2"
    tmp=$(mktemp -d)
    GOBIN=$tmp GOSUMDB=off GOFLAGS=-mod=mod go install github.com/nats-io/nats-server/v2@v2.15.2
    mv "$tmp/nats-server" "$natsbin"; rm -rf "$tmp"
  fi
fi

# --- Node packages (independent Standard Webhooks / GitHub implementations) --
if command -v npm >/dev/null 2>&1; then
  if [ ! -d "$root/scripts/node/node_modules" ] || [ "$root/scripts/node/package.json" -nt "$root/scripts/node/node_modules" ]; then
    log "npm install (scripts/node)"
    (cd "$root/scripts/node" && npm install --no-audit --no-fund --loglevel=error >/dev/null && touch node_modules)
  fi
  export HOOKGATE_TEST_NODE_PATH="$root/scripts/node/node_modules"
else
  log "npm not found: tests that need Node will fail"
fi

# --- start ClickHouse --------------------------------------------------------
chdir=$work/ch
mkdir -p "$chdir/tmp" "$chdir/uf" "$chdir/fs"
chtcp=$(free_port); chhttp=$(free_port); chinter=$(free_port)
log "starting ClickHouse on 127.0.0.1:$chtcp (http $chhttp)"
"$chbin" --config-file=/etc/clickhouse-server/config.xml -- \
  --path="$chdir/" --tmp_path="$chdir/tmp/" --user_files_path="$chdir/uf/" --format_schema_path="$chdir/fs/" \
  --logger.log="$chdir/server.log" --logger.errorlog="$chdir/err.log" --listen_host=127.0.0.1 \
  --tcp_port="$chtcp" --http_port="$chhttp" --interserver_http_port="$chinter" >"$work/clickhouse.log" 2>&1 &
pids+=($!)

# --- start Vault -------------------------------------------------------------
vport=$(free_port)
vtoken=root-$RANDOM$RANDOM
log "starting Vault dev server on 127.0.0.1:$vport"
"$vaultbin" server -dev -dev-root-token-id="$vtoken" -dev-listen-address="127.0.0.1:$vport" >"$work/vault.log" 2>&1 &
pids+=($!)

wait_port "$chtcp" clickhouse
wait_port "$vport" vault

export HOOKGATE_TEST_CLICKHOUSE_ADDR=127.0.0.1:$chtcp
export HOOKGATE_TEST_CLICKHOUSE_HTTP=127.0.0.1:$chhttp
export HOOKGATE_TEST_CLICKHOUSE_BIN=$chbin
export HOOKGATE_TEST_VAULT_ADDR=http://127.0.0.1:$vport
export HOOKGATE_TEST_VAULT_TOKEN=$vtoken
export HOOKGATE_TEST_VAULT_BIN=$vaultbin
export HOOKGATE_TEST_NATS_BIN=$natsbin

if [ $# -gt 0 ]; then
  log "go test $*"
  go test -race -count=1 -timeout 60m "$@"
  exit 0
fi
log "go vet"
go vet ./...
log "go test -race"
go test -race -count=1 -timeout 60m ./...
log "fuzz (short)"
"$root/scripts/fuzz.sh" 3s
log "all tests passed"
