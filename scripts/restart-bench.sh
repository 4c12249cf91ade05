#!/usr/bin/env bash
# A server restart seen by N reconnecting clients (docs/deployment.md): starts
# hb-server on a port the kernel picks, has `hb-bench restart` hold N
# connections, restarts the server (SIGNAL, then DOWN seconds with nothing
# listening, then a new hb-server on the same port) and prints hb-bench's
# report. Extra arguments go to `hb-bench restart`, e.g. `--no-jitter`. Linux; the two processes hold N
# descriptors each, so the open-file limit is raised to the hard limit.
#   N=10000 DOWN=1 scripts/restart-bench.sh [--no-jitter]
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-10000}          # connections
DOWN=${DOWN:-1}        # seconds with nothing listening
SIGNAL=${SIGNAL:-TERM} # how the server is stopped
SERVER_ARGS=${SERVER_ARGS:-}  # e.g. "--drain 10s"
THREADS=${THREADS:-1}  # hb-bench worker threads
BIN=target/release
OUT=target/restart-bench
mkdir -p "$OUT"
cargo build --release --bins -q
ulimit -n "$(ulimit -Hn)"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start_server LISTEN: sets SRV_PID and SRV_ADDR once it listens; fails if
# the server exits first (the port taken, say).
start_server() {
  rm -f "$OUT/server.out"
  # shellcheck disable=SC2086 # SERVER_ARGS is a list of flags
  "$BIN/hb-server" -q --listen "$1" --max-connections $((N + 1000)) \
    --idle-timeout 0 $SERVER_ARGS > "$OUT/server.out" 2>> "$OUT/server.err" &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  SRV_ADDR=
  until [ -n "$SRV_ADDR" ]; do
    if ! kill -0 "$SRV_PID" 2>/dev/null; then
      echo "hb-server did not start: $(tail -n 1 "$OUT/server.err")" >&2
      exit 1
    fi
    SRV_ADDR=$(sed -n 's/^listening on //p' "$OUT/server.out" 2>/dev/null || true)
    [ -n "$SRV_ADDR" ] || sleep 0.01
  done
}

# wait_for PID FILE TEXT: polls until FILE contains TEXT; fails if PID
# exits first.
wait_for() {
  until grep -q "$3" "$2" 2>/dev/null; do
    if ! kill -0 "$1" 2>/dev/null; then
      echo "gave up waiting for '$3': $(tail -n 1 "$2")" >&2
      exit 1
    fi
    sleep 0.05
  done
}

start_server 127.0.0.1:0
: > "$OUT/bench.err"
"$BIN/hb-bench" --target "$SRV_ADDR" --threads "$THREADS" restart -c "$N" "$@" \
  > "$OUT/bench.out" 2> "$OUT/bench.err" &
BENCH=$!
PIDS+=("$BENCH")
wait_for "$BENCH" "$OUT/bench.err" 'restart the server now'
kill "-$SIGNAL" "$SRV_PID"
wait "$SRV_PID" || true
sleep "$DOWN"
start_server "$SRV_ADDR"
status=0
wait "$BENCH" || status=$?
cat "$OUT/bench.out"
kill -TERM "$SRV_PID"
wait "$SRV_PID" || true
exit "$status"
