#!/usr/bin/env bash
# Measures HAProxy's failover time (docs/deployment.md): two hb-server
# backends behind deploy/haproxy.cfg (inter 1s fall 2) on ports
# 25005-25007; SIGKILL one at a random moment of the check cycle, then poll
# the stats socket every 10 ms until it shows the backend DOWN.
# Usage (from the repository root, after `cargo build --release`):
#   RUNS=10 scripts/haproxy-failover.sh
# Needs haproxy, nc (netcat-openbsd) and bc.
set -u
B=${B:-target/release/hb-server}
CFG=$(mktemp -d)
sed -e "s#/run/haproxy/hb-admin.sock#$CFG/admin.sock#" -e 's/127.0.0.1:5005/127.0.0.1:25005/;s/127.0.0.1:5006/127.0.0.1:25006/;s/127.0.0.1:5007/127.0.0.1:25007/' -e 's/maxconn 20000/maxconn 9000/' deploy/haproxy.cfg > $CFG/h.cfg
for run in $(seq 1 ${RUNS:-10}); do
  $B --listen 127.0.0.1:25006 --proxy-protocol -q >/dev/null & s1=$!
  $B --listen 127.0.0.1:25007 --proxy-protocol -q >/dev/null & s2=$!
  haproxy -db -f $CFG/h.cfg >/dev/null 2>&1 & hap=$!
  sleep 3
  sleep "0.$((RANDOM % 1000))"
  t0=$(date +%s.%N); kill -KILL $s1
  while ! echo "show stat" | nc -U -N $CFG/admin.sock 2>/dev/null | grep -q '^hb_servers,hb1,.*,DOWN,'; do sleep 0.01; done
  t1=$(date +%s.%N)
  echo "run $run: DOWN after $(echo "$t1 - $t0" | bc) s"
  kill $s2 $hap; wait 2>/dev/null
done
rm -rf $CFG
