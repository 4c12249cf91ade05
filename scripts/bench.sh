#!/usr/bin/env bash
# The server benchmarks of issue 5 (docs/benchmarks.md): starts hb-server and
# the two baselines (examples/echo_plain.rs, examples/echo_tokio.rs), drives
# them with hb-bench, and prints a markdown table. Raw JSON lines go to
# target/bench/results.jsonl. Linux only (/proc, perf). Run by `make bench`
# after the criterion benches; `ROUNDS=1 SECS=5 scripts/bench.sh` is quicker.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-2}   # each comparison is repeated, interleaved, this often
SECS=${SECS:-10}      # length of one echo run
BIN=target/release
OUT=target/bench
mkdir -p "$OUT"
: > "$OUT/results.jsonl"
cargo build --release --bins --examples -q
HAVE_PERF=0
if perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1; then HAVE_PERF=1; fi

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start_server NAME ARGS... : sets SRV_PID and SRV_ADDR.
start_server() {
  local name=$1; shift
  local cmd
  case $name in
    hb) cmd=("$BIN/hb-server" -q) ;;
    plain) cmd=("$BIN/examples/echo_plain") ;;
    tokio) cmd=("$BIN/examples/echo_tokio") ;;
  esac
  rm -f "$OUT/$name.out"   # else the last run's line could be read
  "${cmd[@]}" --listen 127.0.0.1:0 "$@" > "$OUT/$name.out" 2>> "$OUT/$name.err" &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  SRV_ADDR=
  until [ -n "$SRV_ADDR" ]; do
    SRV_ADDR=$(sed -n 's/^listening on //p' "$OUT/$name.out" 2>/dev/null || true)
    [ -n "$SRV_ADDR" ] || sleep 0.001
  done
}

stop_server() { kill -TERM "$SRV_PID" 2>/dev/null || true; wait "$SRV_PID" 2>/dev/null || true; }

# record LABEL JSON : appends one result line.
record() { printf '{"label":"%s","result":%s}\n' "$1" "$2" >> "$OUT/results.jsonl"; }

# echo_run LABEL CONNS : a closed-loop echo run against SRV, with perf.
echo_run() {
  local label=$1 conns=$2 perf_json=null
  "$BIN/hb-bench" --json --target "$SRV_ADDR" --server-pid "$SRV_PID" \
    echo -c "$conns" -d "${SECS}s" > "$OUT/echo.json" &
  local bench=$!
  if [ "$HAVE_PERF" = 1 ]; then
    sleep 1
    perf stat -x, -e raw_syscalls:sys_enter,context-switches,task-clock \
      -p "$SRV_PID" -o "$OUT/perf.csv" -- sleep $((SECS - 3)) >/dev/null 2>&1 || true
    perf_json=$(awk -F, -v secs=$((SECS - 3)) '
      $3=="raw_syscalls:sys_enter"{s=$1} $3=="context-switches"{c=$1} $3=="task-clock"{t=$1}
      END{printf "{\"syscalls_per_s\":%.0f,\"switches_per_s\":%.0f,\"cpu_ms_per_s\":%.0f}", s/secs, c/secs, t/secs}' "$OUT/perf.csv")
  fi
  wait "$bench" || true   # exit 3 (errors found) is in the JSON and the table
  record "$label" "{\"echo\":$(cat "$OUT/echo.json"),\"perf\":$perf_json}"
}

wait_threads() { # PID N : until the process has N threads
  for _ in $(seq 600); do
    [ "$(awk '/^Threads/{print $2}' "/proc/$1/status")" -ge "$2" ] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $2 threads in $1" >&2; return 1
}

echo "== start to accepting (5 runs)" >&2
for i in 1 2 3 4 5; do
  t0=$(date +%s%N)
  start_server hb
  t1=$(date +%s%N)
  record start "{\"start_us\":$(( (t1 - t0) / 1000 ))}"
  stop_server
done

echo "== memory: 10,000 connections heartbeating every 25 s" >&2
for name in hb plain tokio; do
  start_server "$name"
  record "memory-$name" "$("$BIN/hb-bench" --json --target "$SRV_ADDR" --server-pid "$SRV_PID" \
    idle -c 10000 --heartbeat 25s -d 30s)"
  stop_server
done

echo "== tracking vs no tracking vs tokio, 50 and 1,000 clients" >&2
for round in $(seq "$ROUNDS"); do
  for conns in 50 1000; do
    for name in hb plain tokio; do
      start_server "$name"
      echo_run "echo-$name-$conns" "$conns"
      stop_server
    done
  done
done

# Room for 10,000 idle connections plus the measuring clients.
MAX=(--max-connections 20000)

echo "== echo with 10,000 idle connections open vs none" >&2
start_server hb "${MAX[@]}"
for round in $(seq "$ROUNDS"); do
  echo_run "idle0-echo" 50
  "$BIN/hb-bench" --json --target "$SRV_ADDR" idle -c 10000 --heartbeat 25s \
    -d $((SECS + 30))s > "$OUT/idle.json" &
  idle=$!
  wait_threads "$SRV_PID" 10000
  echo_run "idle10k-echo" 50
  kill -INT "$idle"; wait "$idle" || true
  sleep 2
done
stop_server

echo "== reaper precision: 10,000 staggered expiries (timeout 5 s)" >&2
start_server hb --idle-timeout 5s
record precision "$("$BIN/hb-bench" --json --target "$SRV_ADDR" idle -c 10000 \
  --heartbeat 2s --silent-after 3s --stagger 5s --timeout 5s -d 20s)"
stop_server

echo "== mass expiry: 10,000 silent at once, 50 echo clients meanwhile" >&2
start_server hb --idle-timeout 5s "${MAX[@]}"
"$BIN/hb-bench" --json --target "$SRV_ADDR" idle -c 10000 --heartbeat 2s \
  --silent-after 3s --timeout 5s -d 15s > "$OUT/mass.json" &
idle=$!
wait_threads "$SRV_PID" 10000
: > "$OUT/windows.jsonl"
while kill -0 "$idle" 2>/dev/null; do
  "$BIN/hb-bench" --json --target "$SRV_ADDR" echo -c 50 -d 500ms >> "$OUT/windows.jsonl" || true
done
wait "$idle" || true
record mass "{\"idle\":$(cat "$OUT/mass.json"),\"windows\":[$(paste -sd, "$OUT/windows.jsonl")]}"
stop_server

echo "== shutdown with 10,000 open" >&2
for i in 1 2 3; do
  start_server hb
  "$BIN/hb-bench" --json --target "$SRV_ADDR" idle -c 10000 --heartbeat 25s -d 60s \
    > /dev/null 2>&1 &
  idle=$!
  wait_threads "$SRV_PID" 10000
  t0=$(date +%s%N)
  kill -TERM "$SRV_PID"
  wait "$SRV_PID" || true
  t1=$(date +%s%N)
  record shutdown "{\"shutdown_ms\":$(( (t1 - t0) / 1000000 ))}"
  wait "$idle" || true
done

python3 scripts/bench_table.py "$OUT/results.jsonl"
