# verify only reads: it runs on a hot standby.
fresh_db audit_standby
sql "SELECT count(audit.record('standby.e', 'obj', i::text)) FROM generate_series(1, 100) i" >/dev/null
tools="$(dirname "$PWD")/tools"
sdir=$("$tools/cluster.sh" home standby)
as_pg rm -rf "$sdir/data"
# --checkpoint=fast: the default spread checkpoint can take minutes after the tests before.
as_pg pg_basebackup -h "$PGHOST" -p "$PGPORT" -U postgres -D "$sdir/data" -R -X stream --checkpoint=fast >/dev/null
sport=$((${TEST_PORT:-5498} - 10))
as_pg sh -c "printf '%s\n' \"port = $sport\" \"unix_socket_directories = '$sdir/data'\" hot_standby=on >> '$sdir/data/postgresql.auto.conf'"
as_pg env -u RUST_BACKTRACE pg_ctl start -w -D "$sdir/data" -l "$sdir/standby.log" >/dev/null
trap 'as_pg pg_ctl stop -m fast -D "$sdir/data" >/dev/null 2>&1 || true' EXIT
assert_eq "t" "$(psql -XAtq -h "$sdir/data" -p "$sport" -c "SELECT pg_is_in_recovery()")" "the standby is in recovery"
assert_eq "true|100" "$(psql -XAtq -h "$sdir/data" -p "$sport" -c "SELECT bool_and(ok) || '|' || sum(events_checked) FROM audit.verify()")" \
  "verify runs on the hot standby and checks every event"
PGHOST=$sdir/data PGPORT=$sport sql_expect_error 25006 "SELECT audit.record('x.y')" "recording on the standby is refused as a read-only transaction"
heads=$(sql "SELECT jsonb_agg(to_jsonb(h)) FROM audit.head() h")
assert_eq "true|1" "$(psql -XAtq -h "$sdir/data" -p "$sport" -c "SELECT bool_and(ok) || '|' || count(*) FROM audit.verify(heads => '$heads')")" \
  "verify against noted heads runs on the standby too"
assert_eq "chain,ddl_capture,forwarders,log_mirror,partitions,read_audit,role_capture,row_capture,side_channel" "$(psql -XAtq -h "$sdir/data" -p "$sport" -c "SELECT string_agg(feature, ',' ORDER BY feature) FROM audit.status()")" "audit.status() runs on the standby"
assert_match "^[0-9]+$" "$(psql -XAtq -h "$sdir/data" -p "$sport" -c "SELECT count(*) FROM audit.search('action:standby.e')")" "audit.search runs on the standby"
# the audit of the audit: a read on the standby cannot be an event; it is a line of its log
sleep 0.3
assert_match 'AUDIT: action=audit.search actor="postgres" rows=100 arguments=\{"query": "action:standby.e".*\(not recorded: hot standby\)' \
  "$(grep -o 'AUDIT: action=audit.search.*' "$sdir/standby.log" | tail -1)" "a search on the standby is mirrored to its server log (not recorded: hot standby)"
assert_match 'AUDIT: action=audit.verify actor="postgres" rows=1 ' "$(grep -o 'AUDIT: action=audit.verify.*' "$sdir/standby.log" | tail -1)" \
  "and so is a verify"
