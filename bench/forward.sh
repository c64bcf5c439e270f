#!/usr/bin/env bash
# What forwarders (issue 12, section 2) deliver and cost, measured side by side in one run on
# the bench cluster with the library preloaded and a real rsyslog from Debian on loopback
# (imtcp, octet counting, each message written to a file):
#  1. throughput: N events already in the log, then a forwarder (tcp://, rfc5424) is created;
#     the time until the receiver's file holds all N lines gives events/s;
#  2. the cost to writers: audit.record TPS at 4 clients (one event per transaction) without a
#     forwarder, and with one shipping the events live to rsyslog (goal: at most 5% fewer),
#     in alternating order from round to round (the log grows as a round goes).
# Medians at the end (for the cost, the median of the rounds' ratios).
#   usage: bench/forward.sh [ROUNDS] [SECONDS] [N]     (defaults 3 10 200000)
#   LIVE_FILE=/dev/null: the receiver of the live forwarder writes nothing (to tell its disk
#   writes on this machine from the forwarder's own cost)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
die() { echo "forward.sh: $*" >&2; exit 1; }
LOG=${LOG:-/tmp/audit_ext-bench-forward.log}; : >"$LOG"
rounds=${1:-3} secs=${2:-10} n=${3:-200000}
db=audit_forward_bench
port=${BENCH_PORT:-5496}
rport=$((port + 12000))
command -v rsyslogd >/dev/null || die "rsyslogd not found (apt-get install rsyslog)"
CLUSTER_OPTS="shared_preload_libraries='audit_ext';audit_ext.level=off" tests/tools/cluster.sh start bench "$port" postgres >/dev/null
eval "$(tests/tools/cluster.sh env bench postgres)"
work=$(mktemp -d); chmod 755 "$work"
cat >"$work/rs.conf" <<EOF
global(workDirectory="$work" maxMessageSize="64k")
module(load="imtcp")
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="all") { action(type="omfile" file="$work/out.log" template="raw") }
ruleset(name="live") { action(type="omfile" file="${LIVE_FILE:-$work/live.log}" template="raw") }
input(type="imtcp" port="$rport" ruleset="all")
input(type="imtcp" port="$((rport + 1))" ruleset="live")
EOF
# (the receiver stands in for a SIEM on another machine: niced, so that its work here takes
# from the clients as little as it can on 2 cores)
nice -n 19 rsyslogd -n -f "$work/rs.conf" -i "$work/rs.pid" >"$work/rs.out" 2>&1 &
cleanup() { kill "$(cat "$work/rs.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"; sql postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; }
trap cleanup EXIT
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$rport") 2>/dev/null && break; sleep 0.1; done
rotate() { rm -f "$work/out.log"; kill -HUP "$(cat "$work/rs.pid")"; sleep 0.3; touch "$work/out.log"; }
fresh() { # a database with audit_ext and N events
  sql postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
  sql "$db" -c "CREATE EXTENSION audit_ext" -c "SELECT count(audit.record('bench.event', 'doc', g::text, message => 'bench')) FROM generate_series(1, $n) g" >/dev/null
}
s_rec=$(mktemp); chmod 644 "$s_rec"
echo "SELECT audit.record('bench.event', 'x', 'y');" >"$s_rec"
tput=() t_off=() t_on=() ratios=()
for i in $(seq 1 "$rounds"); do
  # 1. throughput
  fresh; rotate
  total=$(sql "$db" -c "SELECT count(*) FROM audit.events")
  sql "$db" -c CHECKPOINT
  t0=$(date +%s.%N)
  sql "$db" -c "SELECT audit.create_forwarder('bench', 'tcp://127.0.0.1:$rport')" >/dev/null
  while [ "$(wc -l <"$work/out.log")" -lt "$total" ]; do sleep 0.05; done
  t1=$(date +%s.%N)
  eps=$(calc %.0f "$total / ($t1 - $t0)")
  tput+=("$eps")
  # 2. audit.record TPS without and with a live forwarder
  sql "$db" -c "SELECT audit.drop_forwarder('bench')" >/dev/null
  sleep 1
  measure_off() { off=$(run_pgbench "$db" "$s_rec" 4 "$secs"); }
  measure_on() {
    sql "$db" -c "SELECT audit.create_forwarder('live', 'tcp://127.0.0.1:$((rport + 1))', query => 'action:bench.event AND object_type:x')" >/dev/null
    # (it first walks past the events already there; wait until it is live)
    until [ "$(sql "$db" -c "SELECT lag_events < 1000 FROM audit.forwarders WHERE name = 'live'")" = t ]; do sleep 0.2; done
    on=$(run_pgbench "$db" "$s_rec" 4 "$secs")
    lag=$(sql "$db" -c "SELECT lag_events FROM audit.forwarders WHERE name = 'live'")
    sql "$db" -c "SELECT audit.drop_forwarder('live')" >/dev/null
    sleep 1
  }
  # (the order alternates: the log grows during a round)
  if [ $((i % 2)) = 1 ]; then measure_off; measure_on; else measure_on; measure_off; fi
  ratios+=("$(calc %.4f "$on / $off")")
  t_off+=("$off") t_on+=("$on")
  echo "round $i: forwarded $total events in $(calc %.2f "$t1 - $t0") s ($eps events/s); audit.record x4 without a forwarder $off TPS, with one shipping live $on TPS ($(calc %.3f "$on / $off")x; its lag at the end $lag events)"
done
mt=$(median "${tput[@]}") moff=$(median "${t_off[@]}") mon=$(median "${t_on[@]}")
echo "median forwarding throughput over TCP to rsyslog (rfc5424, octet counting): $(int "$mt") events/s"
mr=$(median "${ratios[@]}")
echo "median audit.record TPS at 4 clients: $(int "$moff") without a forwarder, $(int "$mon") with one shipping live; median of the rounds' ratios $(calc %.3f "$mr")x (goal: at least 0.95x: $(met "$mr >= 0.95"))"
rm -f "$s_rec"
