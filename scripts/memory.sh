#!/usr/bin/env bash
# The whole memory bill per connection (issue 9, docs/benchmarks.md): for
# hb-server and the tokio baseline (examples/echo_tokio.rs), side by side in
# one run, the server's RSS and the machine's kernel memory (KernelStack,
# Slab, MemAvailable of /proc/meminfo) before and while hb-bench holds
# CONNS heartbeating connections, divided by CONNS. Linux only.
#
# The kernel figures are the machine's: they include hb-bench's own sockets
# (the same for both servers) and whatever else runs meanwhile, so each
# server is measured ROUNDS times, alternating, and the median is shown.
#
#   scripts/memory.sh                      # 10,000 connections, 2 rounds
#   CONNS=1000 ROUNDS=1 scripts/memory.sh  # quicker
#   HB_SERVER=path/to/hb-server scripts/memory.sh   # another build
#   SERVERS="hb hb-tls" scripts/memory.sh  # hb-server plain and with TLS
#                                          # (issue 19; `make memory-tls`)
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-10000}
ROUNDS=${ROUNDS:-2}
# Every connection heartbeats every 25 s (the client's default), so after
# HOLD seconds with all of them open each has been read from at least once.
HOLD=${HOLD:-27}
BIN=target/release
HB_SERVER=${HB_SERVER:-$BIN/hb-server}
SERVERS=${SERVERS:-hb tokio}
OUT=target/bench
TLS_DIR=$OUT/tls
mkdir -p "$OUT"
cargo build --release --bins --examples -q
case " $SERVERS " in *" hb-tls "*) scripts/tls_certs.sh "$TLS_DIR" ;; esac

SRV_PID=
BENCH_PID=
cleanup() {
  for p in $BENCH_PID $SRV_PID; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# meminfo FIELD: the field's value in KiB.
meminfo() { awk -v f="$1:" '$1 == f { print $2 }' /proc/meminfo; }
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
sockets() { find "/proc/$1/fd" -lname 'socket:*' 2>/dev/null | wc -l; }

# start NAME : starts a server on a free port; sets SRV_PID and SRV_ADDR.
start() {
  local cmd
  case $1 in
    hb) cmd=("$HB_SERVER" -q --max-connections $((CONNS + 100))) ;;
    hb-tls) cmd=("$HB_SERVER" -q --max-connections $((CONNS + 100))
                 --tls-cert "$TLS_DIR/server.pem" --tls-key "$TLS_DIR/server.key") ;;
    tokio) cmd=("$BIN/examples/echo_tokio") ;;
  esac
  "${cmd[@]}" --listen 127.0.0.1:0 > "$OUT/memory-$1.out" 2>> "$OUT/memory-$1.err" &
  SRV_PID=$!
  SRV_ADDR=
  for _ in $(seq 500); do
    SRV_ADDR=$(sed -n 's/^listening on //p' "$OUT/memory-$1.out")
    [ -n "$SRV_ADDR" ] && return 0
    sleep 0.01
  done
  echo "$1 did not start" >&2; exit 1
}

# measure NAME : one row: the deltas per connection, in KiB.
measure() {
  start "$1"
  local rss0 ks0 slab0 avail0 fds0
  fds0=$(sockets "$SRV_PID"); rss0=$(rss "$SRV_PID"); ks0=$(meminfo KernelStack); slab0=$(meminfo Slab)
  avail0=$(meminfo MemAvailable)
  local tls=()
  [ "$1" = hb-tls ] && tls=(--tls-ca "$TLS_DIR/ca.pem")
  "$BIN/hb-bench" --json --target "$SRV_ADDR" "${tls[@]}" idle -c "$CONNS" --heartbeat 25s \
    -d $((HOLD + 60))s > /dev/null &
  BENCH_PID=$!
  for _ in $(seq 1200); do
    [ "$(sockets "$SRV_PID")" -ge $((fds0 + CONNS)) ] && break
    sleep 0.1
  done
  # The measuring window: every connection heartbeats once in it.
  sleep "$HOLD"
  local rss1 ks1 slab1 avail1 held
  rss1=$(rss "$SRV_PID"); ks1=$(meminfo KernelStack); slab1=$(meminfo Slab)
  avail1=$(meminfo MemAvailable); held=$(($(sockets "$SRV_PID") - fds0))
  # TERM, not INT: a background job of a script ignores SIGINT.
  kill -TERM "$BENCH_PID"; wait "$BENCH_PID" 2>/dev/null || true; BENCH_PID=
  kill -TERM "$SRV_PID"; wait "$SRV_PID" || true; SRV_PID=
  awk -v n="$1" -v c="$CONNS" -v held="$held" \
      -v r="$((rss1 - rss0))" -v k="$((ks1 - ks0))" -v s="$((slab1 - slab0))" \
      -v a="$((avail0 - avail1))" 'BEGIN {
    printf "%s %d %.2f %.2f %.2f %.2f\n", n, held, r / c, k / c, s / c, a / c }'
  # Let the kernel free the closed sockets before the next baseline.
  sleep 5
}

: > "$OUT/memory.txt"
for round in $(seq "$ROUNDS"); do
  for name in $SERVERS; do
    echo "== round $round: $name, $CONNS connections" >&2
    measure "$name" | tee -a "$OUT/memory.txt" >&2
  done
done

echo "| server ($CONNS connections, median of $ROUNDS) | held | RSS | KernelStack | Slab | RSS + KernelStack + Slab | MemAvailable drop |"
echo "|---|---|---|---|---|---|---|"
for name in $SERVERS; do
  grep "^$name " "$OUT/memory.txt" | awk -v n="$name" '
    { held[NR] = $2; for (i = 3; i <= 6; i++) v[i, NR] = $i }
    function median(i,   a, k, j, t) {
      for (k = 1; k <= NR; k++) a[k] = v[i, k]
      for (k = 1; k <= NR; k++) for (j = k + 1; j <= NR; j++)
        if (a[j] < a[k]) { t = a[k]; a[k] = a[j]; a[j] = t }
      return NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    }
    END {
      r = median(3); k = median(4); s = median(5); m = median(6)
      printf "| %s | %d | %.2f KiB | %.2f KiB | %.2f KiB | %.2f KiB | %.2f KiB |\n",
        n, held[1], r, k, s, r + k + s, m
    }'
done
