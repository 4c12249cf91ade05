#!/usr/bin/env bash
# The TLS measurements of issue 19 (docs/benchmarks.md), against hb-server
# with and without --tls-cert (an ECDSA P-256 certificate from
# scripts/tls_certs.sh):
#  1. 50-client closed-loop echo, plain and TLS alternated ROUNDS times (a
#     busy machine affects both alike); every run's msg/s and p99 printed,
#     then the ratio of the medians;
#  2. handshakes per second: hb-bench churn (connect, TLS handshake with no
#     session resumption, one heartbeat, close), CONCURRENCY cycles in
#     flight, plain and TLS.
# The memory per idle TLS connection is scripts/memory.sh's hb-tls row
# (`make memory-tls`). Linux only. Run by `make bench-tls`.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SECS=${SECS:-8}
CONCURRENCY=${CONCURRENCY:-8}
BIN=target/release
OUT=target/bench
TLS_DIR=$OUT/tls
mkdir -p "$OUT"
cargo build --release --bins -q
scripts/tls_certs.sh "$TLS_DIR"

SRV_PID=
cleanup() { [ -z "$SRV_PID" ] || kill "$SRV_PID" 2>/dev/null || true; }
trap cleanup EXIT

# start_server ARGS... : sets SRV_PID and SRV_ADDR.
start_server() {
  rm -f "$OUT/tls-srv.out"
  "$BIN/hb-server" -q --listen 127.0.0.1:0 "$@" > "$OUT/tls-srv.out" 2>> "$OUT/tls-srv.err" &
  SRV_PID=$!
  SRV_ADDR=
  until [ -n "$SRV_ADDR" ]; do
    SRV_ADDR=$(sed -n 's/^listening on //p' "$OUT/tls-srv.out" 2>/dev/null || true)
    [ -n "$SRV_ADDR" ] || sleep 0.01
  done
}

stop_server() { kill -TERM "$SRV_PID" 2>/dev/null || true; wait "$SRV_PID" 2>/dev/null || true; SRV_PID=; }

tls_server=(--tls-cert "$TLS_DIR/server.pem" --tls-key "$TLS_DIR/server.key")
tls_client=(--tls-ca "$TLS_DIR/ca.pem")

# bench KIND MODE ARGS... : one hb-bench run against a fresh server, plain
# or tls; prints the JSON fields FIELDS (space-separated, dotted paths).
bench() {
  local kind=$1 fields=$2; shift 2
  local server=() client=()
  if [ "$kind" = tls ]; then server=("${tls_server[@]}"); client=("${tls_client[@]}"); fi
  start_server "${server[@]}"
  "$BIN/hb-bench" --json --target "$SRV_ADDR" "${client[@]}" "$@" > "$OUT/tls-bench.json" || true
  stop_server
  python3 - "$OUT/tls-bench.json" $fields <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
def get(path):
    value = report
    for key in path.split("."):
        value = value[key]
    return value
print(" ".join(str(get(field)) for field in sys.argv[2:]))
PY
}

median() { sort -n | awk '{ a[NR] = $1 } END { print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

echo "== echo, 50 clients, ${SECS}s each: msg/s p99_us errors" >&2
: > "$OUT/tls-echo.txt"
for round in $(seq "$ROUNDS"); do
  for kind in plain tls; do
    row=$(bench "$kind" "throughput_per_s latency.p99_us io_errors" echo -c 50 -d "${SECS}s")
    echo "round $round $kind $row" | tee -a "$OUT/tls-echo.txt" >&2
  done
done
plain=$(awk '$3 == "plain" { print $4 }' "$OUT/tls-echo.txt" | median)
tls=$(awk '$3 == "tls" { print $4 }' "$OUT/tls-echo.txt" | median)
echo "echo median msg/s: plain $plain, TLS $tls, TLS/plain $(awk -v t="$tls" -v p="$plain" 'BEGIN { printf "%.3f", t / p }')"

echo "== churn, $CONCURRENCY in flight, ${SECS}s: cycles/s errors" >&2
for kind in plain tls; do
  row=$(bench "$kind" "cycles_per_s errors latency.p50_us latency.p99_us" churn -c "$CONCURRENCY" -d "${SECS}s")
  echo "churn $kind (cycles/s errors p50_us p99_us): $row"
done
