# Threshold alerts and streams with a real LISTEN client (issue 5, section 3): psql sessions
# that LISTEN and print every notification they receive, while other sessions record events.
fresh_db audit_alerts
sql "SELECT audit.create_alert('brute-force', 'action:authentication.login AND status:failure',
                               threshold => 5, \"window\" => '6 seconds', group_by => 'actor');
     SELECT audit.stream('audit_high', 'severity:high OR severity:critical');
     SELECT audit.stream('audit_all')" >/dev/null

# listen CHANNEL SECONDS OUTFILE: one psql session that LISTENs, waits, and prints what came.
listen() {
  psql -Xq -c "LISTEN $1" -c "SELECT pg_sleep($2)" -c "SELECT 1" >"$3" 2>&1 &
}
fail_login() { # ACTOR [ROLLBACK]: one failed login by ACTOR in its own transaction
  sql "BEGIN; SELECT audit.set_context(actor => '$1');
       SELECT audit.record('authentication.login', status => 'failure', severity => 'warning');
       ${2:-COMMIT}" >/dev/null
}
# psql prints: Asynchronous notification "CH" with payload "RAW" received from server process with PID N.
notes() { sed -n 's/^Asynchronous notification "[^"]*" with payload "\(.*\)" received from server process with PID [0-9]*\.$/\1/p' "$1"; }

out=$(mktemp -d)
listen audit_alert 25 "$out/alerts"
listen audit_high 25 "$out/high"
listen audit_all 25 "$out/all"
sleep 1
mark=$(sql "SELECT max(id) FROM audit.events")
for i in 1 2 3 4; do fail_login alice; done
sleep 0.3
for i in 1 2 3 4; do fail_login bob; done
fail_login bob ROLLBACK                       # bob's 5th rolls back: nothing fires
fail_login alice                              # alice's 5th: fires
fail_login alice                              # 6th in the same window: nothing
sql "SELECT audit.record('authentication.login', status => 'success')" >/dev/null  # does not match
sql "SELECT audit.record('vm.delete', severity => 'critical', object_id => 'vm-9')" >/dev/null
sleep 6.5                                     # the window passes: counting restarts
for i in 1 2 3 4; do fail_login alice; done   # 4 after the firing: nothing
fail_login alice                              # 5th after the firing, new window: fires again
wait
alerts=$(notes "$out/alerts")
assert_eq 2 "$(grep -c . <<<"$alerts")" "exactly two alerts arrive: one per window for alice, none for bob's rolled-back 5th"
first=$(head -n 1 <<<"$alerts")
assert_eq '"brute-force"|"alice"|5|"6 seconds"|"high"' \
  "$(python3 -c 'import json,sys; p=json.loads(sys.argv[1]); print("|".join(json.dumps(p[k]) for k in ("alert","group","count","window","severity")))' "$first")" \
  "the payload names the alert, the group, the count, the window and the severity"
ids=$(sql "SELECT string_agg(id::text, ',' ORDER BY id) FROM audit.events WHERE id > $mark AND action = 'authentication.login'
           AND status = 'failure' AND actor = 'alice'")
assert_eq "$(cut -d, -f1 <<<"$ids")|$(cut -d, -f5 <<<"$ids")" \
  "$(python3 -c 'import json,sys; p=json.loads(sys.argv[1]); print(str(p["first_id"]) + "|" + str(p["last_id"]))' "$first")" \
  "first_id and last_id are the first and fifth of alice's failures"
assert_eq "alice|5" \
  "$(python3 -c 'import json,sys; p=json.loads(sys.argv[1]); print(p["group"] + "|" + str(p["count"]))' "$(tail -n 1 <<<"$alerts")")" \
  "after the window, counting restarted and the second alert counts 5 new failures"
assert_eq "2|alice" "$(sql "SELECT count(*) || '|' || string_agg(DISTINCT object_id, ',') FROM audit.events WHERE id > $mark AND action = 'alert.fired'")" \
  "each firing is recorded as an alert.fired event"
assert_eq "2" "$(sql "SELECT times_fired FROM audit.alerts WHERE name = 'brute-force'")" "audit.alerts counts the firings"

ids_of() { python3 -c 'import json,sys; print(",".join(str(json.loads(l)["id"]) for l in sys.stdin if l.strip()))'; }
assert_eq "$(sql "SELECT string_agg(id::text, ',' ORDER BY id) FROM audit.events WHERE id > $mark AND severity IN ('high', 'critical')")" \
  "$(notes "$out/high" | ids_of)" "the filtered stream delivers exactly the high and critical events (the alerts among them), in order"
assert_eq "$(sql "SELECT string_agg(id::text, ',' ORDER BY id) FROM audit.events WHERE id > $mark")" \
  "$(notes "$out/all" | ids_of)" "the unfiltered stream delivers every committed event, nothing from the rolled-back one"
assert_eq "alice|authentication.login|failure" \
  "$(notes "$out/all" | sed -n 1p | python3 -c 'import json,sys; p=json.loads(sys.stdin.read()); print(p["actor"] + "|" + p["action"] + "|" + p["status"])')" \
  "a stream payload carries the event's fields"

# Rule changes are audited; a disabled rule does not fire; a dropped one is gone.
sql "SELECT audit.enable_alert('brute-force', false)" >/dev/null
listen audit_alert 3 "$out/disabled"
sleep 0.5
for i in 1 2 3 4 5 6; do fail_login carol; done
wait
assert_eq "" "$(notes "$out/disabled")" "a disabled alert does not fire"
sql "SELECT audit.drop_alert('brute-force'); SELECT audit.unstream('audit_high'); SELECT audit.unstream('audit_all')" >/dev/null
assert_eq "alert.create alert.disable alert.drop stream.create stream.create stream.drop stream.drop" \
  "$(sql "SELECT string_agg(action, ' ' ORDER BY action) FROM audit.events WHERE module = 'alert' AND action NOT IN ('alert.fired')")" \
  "creating, disabling and dropping rules and streams are audited events"
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify()")" "alert.fired events are chained like any event"

# A role that may INSERT into audit.events but views only its own events: the alert counts
# every matching event (as the extension's owner), not only those row level security shows it,
# and its NOTIFY still reaches the listener.
PGOPTIONS='-c client_min_messages=warning' sql "DROP ROLE IF EXISTS al_viewer" >/dev/null
sql "CREATE ROLE al_viewer LOGIN IN ROLE audit_viewer; GRANT INSERT ON audit.events TO al_viewer;
     GRANT USAGE ON SEQUENCE audit.events_id_seq TO al_viewer;
     SELECT audit.create_alert('spray', 'action:card.declined', threshold => 3, \"window\" => '1 minute')" >/dev/null
m=$(sql "SELECT max(id) FROM audit.events")
listen audit_alert 4 "$out/viewer"
sleep 0.5
sql "SELECT audit.record('card.declined'); SELECT audit.record('card.declined')" >/dev/null
psql -XAtq -v ON_ERROR_STOP=1 -U al_viewer -c "INSERT INTO audit.events (action) VALUES ('card.declined')" >/dev/null
wait
assert_eq "1" "$(sql "SELECT count(*) FROM audit.events WHERE id > $m AND action = 'alert.fired' AND object_name = 'spray'")" \
  "a viewer's direct INSERT that reaches the threshold fires the alert: every matching event is counted, not only the viewer's own"
assert_match '"alert": "spray"|"alert":"spray"' "$(notes "$out/viewer")" "and its notification is delivered"
sql "SELECT audit.drop_alert('spray'); REVOKE ALL ON audit.events FROM al_viewer; REVOKE ALL ON SEQUENCE audit.events_id_seq FROM al_viewer; DROP ROLE al_viewer" >/dev/null
rm -rf "$out"
