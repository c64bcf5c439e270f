# Forwarders (issue 12, section 2; src/forward/): events shipped to a real rsyslog from Debian
# on loopback over UDP, TCP (RFC 6587 octet counting) and TLS (RFC 5425, a CA made here), on a
# cluster of its own with the library preloaded. 10,000 events arrive over each and every line
# parses as RFC 5424 (the published syslog-rfc5424-parser) with the event's id, chain, seq and
# hash; rsyslog stopped for 10 s mid-stream loses nothing; kill -9 of the postmaster mid-stream
# loses nothing (duplicates counted); a bad certificate, a receiver that is down, the query
# filter, the checkpoint shipped and verified from what the receiver got; who may do what.

tools="$(dirname "$PWD")/tools"
ROOT=$(cd "$tools/../.." && pwd)
export PYTHONPATH="$ROOT/.pylib"
work=$(mktemp -d); chmod 755 "$work"

# ---- not preloaded (the test cluster): forwarders cannot run ---------------------------------
fresh_db fwd_plain
sql_expect_error 55000 "SELECT audit.create_forwarder('x', 'tcp://127.0.0.1:1')" \
  "not preloaded: audit.create_forwarder fails with 55000"
sql "DROP DATABASE IF EXISTS fwd_plain WITH (FORCE)" -d postgres

command -v rsyslogd >/dev/null || { fail "rsyslogd is not installed (tests/tools/deps.sh installs rsyslog)"; exit 0; }
[ -e /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so ] || ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1 \
  || { fail "rsyslog's TLS driver is not installed (tests/tools/deps.sh installs rsyslog-gnutls)"; exit 0; }

# ---- a CA, and a server certificate for localhost / 127.0.0.1 --------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/ca.key" -out "$work/ca.pem" -days 2 \
  -subj "/CN=audit_ext test CA" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$work/server.key" -out "$work/server.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$work/ext.cnf"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -out "$work/server.pem" -days 2 -extfile "$work/ext.cnf" 2>/dev/null
chmod 644 "$work"/*.pem

# ---- two rsyslog instances: plain (TCP and UDP) and TLS ---------------------------------------
base=$((${TEST_PORT:-5498} + 11000))
p_tcp=$base; p_udp=$((base + 1)); p_tls=$((base + 2))
mkdir -p "$work/plain" "$work/tls"
cat >"$work/plain.conf" <<EOF
global(workDirectory="$work/plain" maxMessageSize="64k")
module(load="imtcp" maxSessions="100")
module(load="imudp")
template(name="raw" type="string" string="%rawmsg%\n")
template(name="parsed" type="string" string="%protocol-version% %app-name% %msgid%\n")
ruleset(name="tcp") { action(type="omfile" file="$work/tcp.log" template="raw")
                      action(type="omfile" file="$work/tcp.parsed" template="parsed") }
ruleset(name="udp") { action(type="omfile" file="$work/udp.log" template="raw") }
input(type="imtcp" port="$p_tcp" ruleset="tcp")
input(type="imudp" port="$p_udp" ruleset="udp" rcvbufSize="8m")
EOF
cat >"$work/tls.conf" <<EOF
global(workDirectory="$work/tls" maxMessageSize="64k"
       defaultNetstreamDriver="gtls" defaultNetstreamDriverCAFile="$work/ca.pem"
       defaultNetstreamDriverCertFile="$work/server.pem" defaultNetstreamDriverKeyFile="$work/server.key")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="tls") { action(type="omfile" file="$work/tls.log" template="raw") }
input(type="imtcp" port="$p_tls" ruleset="tls")
EOF
rsys_start() { # NAME: start an instance, wait until it listens
  rsyslogd -n -f "$work/$1.conf" -i "$work/$1.pid" >"$work/$1.out" 2>&1 &
  local port=$p_tcp; [ "$1" = tls ] && port=$p_tls
  for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0; sleep 0.1; done
  echo "rsyslog $1 did not start:"; cat "$work/$1.out"; return 1
}
rotate() { # FILE: start the instance's file afresh (as logrotate does: move it, then SIGHUP)
  rm -f "$work/$1.log.old"; mv "$work/$1.log" "$work/$1.log.old" 2>/dev/null || true
  kill -HUP "$(cat "$work/plain.pid")"; sleep 0.5
  touch "$work/$1.log"
}
rsys_stop() { # NAME
  local pid; pid=$(cat "$work/$1.pid" 2>/dev/null) || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
}
rsys_start plain
rsys_start tls

# ---- a preloaded cluster of its own -----------------------------------------------------------
fport=$((${TEST_PORT:-5498} - 25))
opts="shared_preload_libraries='audit_ext';audit_ext.tls_ca_file='$work/ca.pem'"
CLUSTER_OPTS=$opts "$tools/cluster.sh" start fwd "$fport" postgres >/dev/null
trap 'rsys_stop plain; rsys_stop tls; "$tools/cluster.sh" stop fwd >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
eval "$("$tools/cluster.sh" env fwd postgres)"
fdata=$("$tools/cluster.sh" datadir fwd)
PGOPTIONS='-c client_min_messages=warning' sql "DROP DATABASE IF EXISTS fwd_db WITH (FORCE);
     DROP ROLE IF EXISTS fwd_admin; DROP ROLE IF EXISTS fwd_reader; DROP ROLE IF EXISTS fwd_writer"
sql "CREATE DATABASE fwd_db"
export PGDATABASE=fwd_db
sql "CREATE EXTENSION audit_ext; CREATE ROLE fwd_admin LOGIN IN ROLE audit_admin; CREATE ROLE fwd_reader LOGIN IN ROLE audit_reader;
     CREATE ROLE fwd_writer LOGIN IN ROLE audit_writer"

expected() { # FILE [WHERE]: id, chain, seq, hash of the events (that match WHERE), tab separated
  psql -XAtq -F $'\t' -c "SELECT id, chain, seq, encode(hash, 'hex') FROM audit.events WHERE ${2:-true} ORDER BY id" >"$1"
}
check() { python3 "$tools/syslog_received.py" "$@"; }
field() { sed -nE "s/.*\\b$1=([0-9]+).*/\\1/p" <<<"$2"; }
wait_received() { # RECEIVED EXPECTED SECONDS: poll until nothing is missing; prints check's line
  local r end=$((SECONDS + $3))
  while :; do
    r=$(check "$1" "$2" 2>/dev/null || true)
    [ "$(field missing "$r")" = 0 ] && break
    [ $SECONDS -ge $end ] && break
    sleep 0.5
  done
  echo "$r"
}
load() { # N TAG: N events from 4 sessions at once, in one transaction each (four chains at once)
  local n=$(($1 / 4)) w pids=()
  for w in 1 2 3 4; do
    sql "SELECT audit.record('fwd.$2', object_id => '$w-' || g) FROM generate_series(1, $n) g" -U fwd_writer >/dev/null &
    pids+=($!)
  done
  wait "${pids[@]}"
}

# ---- who may, and what is refused -------------------------------------------------------------
sql_expect_error 42501 "SELECT audit.create_forwarder('x', 'tcp://127.0.0.1:1')" \
  "a reader cannot create a forwarder (42501)" -U fwd_reader
sql_expect_error 22023 "SELECT audit.create_forwarder('x', 'http://127.0.0.1:1')" "an unknown scheme is refused (22023)" -U fwd_admin
sql_expect_error 22023 "SELECT audit.create_forwarder('x', 'tcp://127.0.0.1')" "a target without a port is refused (22023)" -U fwd_admin
sql_expect_error 22023 "SELECT audit.create_forwarder('x', 'tcp://127.0.0.1:1', 'xml')" "an unknown format is refused (22023)" -U fwd_admin
sql_expect_error 22023 "SELECT audit.create_forwarder('bad name', 'tcp://127.0.0.1:1')" "a name with a space is refused (22023)" -U fwd_admin
sql_expect_error 42601 "SELECT audit.create_forwarder('x', 'tcp://127.0.0.1:1', query => '(action:x')" \
  "a query that does not parse is refused (42601)" -U fwd_admin
hint=$(psql -Xq -v VERBOSITY=verbose -U fwd_admin -c "SELECT audit.create_forwarder('x', 'ftp://h:1')" 2>&1 | grep HINT || true)
assert_match "udp://host:port, tcp://host:port or tls://host:port" "$hint" "the error's HINT names the targets that work"
sql_expect_error 42704 "SELECT audit.drop_forwarder('nope')" "dropping a forwarder that does not exist fails (42704)" -U fwd_admin

# ---- TCP: 10,000 events ------------------------------------------------------------------------
sql "SELECT audit.create_forwarder('siem_tcp', 'tcp://127.0.0.1:$p_tcp')" -U fwd_admin >/dev/null
sql_expect_error 42710 "SELECT audit.create_forwarder('siem_tcp', 'tcp://127.0.0.1:$p_tcp')" \
  "a second forwarder of the same name is refused (42710)" -U fwd_admin
assert_eq "fwd_admin|tcp://127.0.0.1:$p_tcp|rfc5424" \
  "$(sql "SELECT actor, new->>'target', new->>'format' FROM audit.events WHERE action = 'audit.forwarder_created' AND object_id = 'siem_tcp'")" \
  "creating a forwarder is recorded (audit.forwarder_created, by whom, target, format)"
load 10000 tcp
expected "$work/exp_tcp"
r=$(wait_received "$work/tcp.log" "$work/exp_tcp" 120)
n=$(wc -l <"$work/exp_tcp")
assert_eq "0 0 0" "$(field missing "$r") $(field mismatched "$r") $(field unparsed "$r")" \
  "TCP: all $n events arrived at rsyslog, each line parses as RFC 5424 with the event's id, chain, seq and hash ($r)"
assert_eq "t" "$(sql "SELECT $(field distinct "$r") >= 10000")" "TCP: at least the 10,000 events of the load"
assert_eq "0" "$(grep -cv '^1 audit_ext ' "$work/tcp.parsed" || true)" "TCP: rsyslog itself parsed every message as RFC 5424 (version 1, app-name audit_ext)"
assert_eq "t" "$(sql "SELECT count(DISTINCT chain) > 1 FROM audit.events WHERE action = 'fwd.tcp'")" \
  "the load spread over several chains (each chain's position is kept apart)"
sleep 1
row=$(sql "SELECT last_error IS NULL, last_sent_at IS NOT NULL, lag_events < 10, last_id >= (SELECT max(id) FROM audit.events WHERE action = 'fwd.tcp') FROM audit.forwarders WHERE name = 'siem_tcp'" -U fwd_reader)
assert_eq "t|t|t|t" "$row" "audit.forwarders (as a reader): no error, last_sent_at set, no lag, last_id past the load"
assert_match "1 forwarder\(s\).*worker running" "$(sql "SELECT detail FROM audit.status() WHERE feature = 'forwarders'" -U fwd_reader)" \
  "audit.status() reports the forwarders and their worker"

# a forwarder dropped and created again under its name at once is a new one: it starts over
all=$(sql "SELECT count(*) FROM audit.events")
sql "SELECT audit.drop_forwarder('siem_tcp'); SELECT audit.create_forwarder('siem_tcp', 'tcp://127.0.0.1:$p_tcp')" -U fwd_admin >/dev/null
for _ in $(seq 120); do
  [ "$(sql "SELECT sent >= $all FROM audit.forwarders WHERE name = 'siem_tcp'")" = t ] && break; sleep 0.5
done
assert_eq "t" "$(sql "SELECT sent >= $all FROM audit.forwarders WHERE name = 'siem_tcp'")" \
  "a forwarder dropped and created again under the same name starts from the beginning of the log"

# ---- UDP: 10,000 events ------------------------------------------------------------------------
mark=$(sql "SELECT max(id) FROM audit.events")
sql "SELECT audit.create_forwarder('siem_udp', 'udp://127.0.0.1:$p_udp', query => 'action:fwd.udp')" -U fwd_admin >/dev/null
sql "SELECT audit.record('fwd.udp', message => repeat('é', 40000))" -U fwd_writer >/dev/null   # 80,000 bytes
load 10000 udp
expected "$work/exp_udp" "action = 'fwd.udp'"
r=$(wait_received "$work/udp.log" "$work/exp_udp" 120)
assert_eq "10001 0 0 0 0" "$(field distinct "$r") $(field missing "$r") $(field mismatched "$r") $(field unparsed "$r") $(field extra "$r")" \
  "UDP with a query: exactly the 10,001 matching events arrived, one datagram each, each parses as RFC 5424, an 80 kB event cut to one datagram ($r)"

# ---- TLS: 10,000 events; a certificate for another name is refused ----------------------------
sql "SELECT audit.create_forwarder('siem_tls', 'tls://localhost:$p_tls', query => 'action:fwd.tls')" -U fwd_admin >/dev/null
sql "SELECT audit.create_forwarder('siem_tls_wrong', 'tls://127.0.0.2:$p_tls')" -U fwd_admin >/dev/null
load 10000 tls
expected "$work/exp_tls" "action = 'fwd.tls'"
r=$(wait_received "$work/tls.log" "$work/exp_tls" 120)
assert_eq "0 0 0" "$(field missing "$r") $(field mismatched "$r") $(field unparsed "$r")" \
  "TLS (RFC 5425, checked against the test's CA): the 10,000 events arrived, each parses as RFC 5424 ($r)"
err=$(sql "SELECT last_error FROM audit.forwarders WHERE name = 'siem_tls_wrong'")
assert_match "(certificate|Certificate|NotValidForName)" "$err" "a receiver whose certificate does not name the target is refused; last_error says why"
assert_eq "t" "$(sql "SELECT last_id IS NULL AND lag_events > 0 FROM audit.forwarders WHERE name = 'siem_tls_wrong'")" \
  "nothing was sent to it, and lag_events shows how far behind it is"
assert_match "with an error" "$(sql "SELECT detail FROM audit.status() WHERE feature = 'forwarders'")" "audit.status() names the forwarder in error"
sql "SELECT audit.drop_forwarder('siem_tls_wrong')" -U fwd_admin >/dev/null
assert_eq "siem_tls_wrong|tls://127.0.0.2:$p_tls" \
  "$(sql "SELECT object_id, old->>'target' FROM audit.events WHERE action = 'audit.forwarder_dropped' ORDER BY id DESC LIMIT 1")" \
  "dropping a forwarder is recorded (audit.forwarder_dropped, with what it was)"

# ---- rsyslog stopped for 10 s mid-stream --------------------------------------------------------
sql "SELECT audit.drop_forwarder('siem_tcp')" -U fwd_admin >/dev/null
rotate tcp
sql "SELECT audit.create_forwarder('siem_stop', 'tcp://127.0.0.1:$p_tcp', query => 'action:fwd.stop')" -U fwd_admin >/dev/null
stream() { # TAG SECONDS: 20 events a transaction, one transaction after another, for SECONDS
  local end=$((SECONDS + $2))
  while [ $SECONDS -lt "$end" ]; do
    sql "SELECT audit.record('fwd.$1', object_id => g::text) FROM generate_series(1, 20) g" -U fwd_writer >/dev/null
  done
}
stream stop 16 &
sp=$!
sleep 3
rsys_stop plain
sleep 10
during=$(sql "SELECT last_error IS NOT NULL, lag_events > 0 FROM audit.forwarders WHERE name = 'siem_stop'")
rsys_start plain
wait $sp
expected "$work/exp_stop" "action = 'fwd.stop'"
r=$(wait_received "$work/tcp.log" "$work/exp_stop" 120)
assert_eq "t|t" "$during" "while rsyslog is down, audit.forwarders shows last_error and a growing lag_events"
assert_eq "0 0 0" "$(field missing "$r") $(field mismatched "$r") $(field unparsed "$r")" \
  "rsyslog stopped for 10 s mid-stream and started again: no event lost ($(wc -l <"$work/exp_stop") events; $r)"
assert_eq "t" "$(sql "SELECT $(field duplicates "$r") <= 64 * 500")" "duplicates are bounded (at most 64 batches of 500; here $(field duplicates "$r"))"
sleep 1
assert_eq "t" "$(sql "SELECT last_error IS NULL FROM audit.forwarders WHERE name = 'siem_stop'")" "after the receiver is back, last_error is cleared"

# ---- kill -9 of the postmaster mid-stream ------------------------------------------------------
sql "SELECT audit.drop_forwarder('siem_stop')" -U fwd_admin >/dev/null
rotate tcp
sql "SELECT audit.create_forwarder('siem_crash', 'tcp://127.0.0.1:$p_tcp', query => 'action:fwd.crash')" -U fwd_admin >/dev/null
sql "SELECT audit.record('fwd.crash', object_id => g::text) FROM generate_series(1, 60000) g" -U fwd_writer >/dev/null
for _ in $(seq 1500); do [ -s "$work/tcp.log" ] && break; sleep 0.02; done
kill9_cluster "$fdata"
sleep 0.5   # (what rsyslog got before the kill, written out)
before=$(wc -l <"$work/tcp.log")
if [ "$before" -gt 0 ] && [ "$before" -lt 60000 ]; then ok "killed postmaster $KILLED_PM with SIGKILL mid-stream ($before of 60000 lines received)"; else
  fail "the kill was not mid-stream ($before of 60000 lines received)"; fi
CLUSTER_OPTS=$opts "$tools/cluster.sh" start fwd "$fport" postgres >/dev/null
expected "$work/exp_crash" "action = 'fwd.crash'"
r=$(wait_received "$work/tcp.log" "$work/exp_crash" 180)
assert_eq "60000 0 0 0" "$(wc -l <"$work/exp_crash") $(field missing "$r") $(field mismatched "$r") $(field unparsed "$r")" \
  "after kill -9 and recovery the worker came back by itself and every event arrived ($r)"
dups=$(field duplicates "$r")
echo "       duplicates after the crash: $dups"
assert_eq "t" "$(sql "SELECT $dups <= 64 * 500")" "duplicates after the crash are bounded (at most 64 batches of 500; here $dups)"

# ---- the checkpoint shipped as jsonl, and verified from what the receiver got ------------------
sql "SELECT audit.drop_forwarder('siem_crash')" -U fwd_admin >/dev/null
rotate tcp
sql "SELECT audit.create_forwarder('digests', 'tcp://127.0.0.1:$p_tcp', 'jsonl', 'action:audit.checkpoint')" -U fwd_admin >/dev/null
sql "SELECT audit.checkpoint()" -U fwd_admin >/dev/null
for _ in $(seq 60); do [ -s "$work/tcp.log" ] && break; sleep 0.5; done
key=$(sql "SELECT audit.signing_key()")
assert_eq "ok" "$(python3 - "$work/tcp.log" "$key" <<'EOF'
import json, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
line = open(sys.argv[1], encoding='utf-8').readline()
e = json.loads(line)
cp = e['new']
pk = Ed25519PublicKey.from_public_bytes(bytes.fromhex(sys.argv[2]))
pk.verify(bytes.fromhex(cp['signature']), cp['payload'].encode('utf-8'))
assert cp['public_key'] == sys.argv[2] and e['action'] == 'audit.checkpoint'
print('ok')
EOF
)" "a forwarder of checkpoints (jsonl) gives the SIEM each signed checkpoint; its Ed25519 signature verifies with the public key"

sql "SELECT audit.drop_forwarder('siem_udp'); SELECT audit.drop_forwarder('siem_tls'); SELECT audit.drop_forwarder('digests')" -U fwd_admin >/dev/null
assert_eq "0" "$(sql "SELECT count(*) FROM audit.forwarders")" "all forwarders dropped"
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify()")" "verify passes"
for _ in $(seq 40); do
  [ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'audit_ext forwarder' AND datname = 'fwd_db'")" = 0 ] && break; sleep 0.25
done
assert_eq "0" "$(sql "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'audit_ext forwarder' AND datname = 'fwd_db'")" \
  "with no forwarder left, the database's forwarder worker exits"
# a database with a forwarder: its worker is a session of it; DROP DATABASE ... WITH (FORCE)
# stops it, and it is not started again
sql "SELECT audit.create_forwarder('last', 'tcp://127.0.0.1:$p_tcp')" -U fwd_admin >/dev/null
for _ in $(seq 40); do
  [ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'audit_ext forwarder' AND datname = 'fwd_db'")" = 1 ] && break; sleep 0.25
done
PGOPTIONS='-c client_min_messages=warning' sql "DROP DATABASE fwd_db WITH (FORCE)" -d postgres >/dev/null
sleep 7
assert_eq "0" "$(sql "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'audit_ext forwarder' AND datid IS NOT NULL" -d postgres)" \
  "DROP DATABASE ... WITH (FORCE) of a database with a forwarder stops its worker for good"
