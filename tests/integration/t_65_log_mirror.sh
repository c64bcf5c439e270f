# audit_ext.log_events (issue 11, section 4): every committed event, whatever its source, is
# also one "AUDIT: key=value ..." line in the server log, written when its transaction
# commits; rolled-back events (transaction or savepoint) never appear; values are quoted and
# escaped as src/mirror.rs documents; no session can switch the mirror off for itself.
log="$("$TOOLS/cluster.sh" datadir test)/server.log"
fresh_db audit_mirror
sql "LOAD 'audit_ext'; ALTER SYSTEM SET audit_ext.log_events = on; SELECT pg_reload_conf()" >/dev/null
sleep 1
start=$(stat -c %s "$log")
id1=$(sql "SELECT audit.record('mirror.ok', 'doc', 'd 1', message => 'say \"hi\"' || chr(10) || 'bye')")
sql "BEGIN; SELECT audit.record('mirror.rolledback'); ROLLBACK" >/dev/null
sql "BEGIN; SELECT audit.record('mirror.kept'); SAVEPOINT s; SELECT audit.record('mirror.savepoint');
     ROLLBACK TO s; COMMIT" >/dev/null
sql "CREATE TABLE public.m (id int PRIMARY KEY, v text); SELECT audit.track('public.m');
     INSERT INTO public.m VALUES (1, 'a'), (2, 'b')" >/dev/null
sql_expect_error 55P02 "LOAD 'audit_ext'; SET audit_ext.log_events = off" "a session cannot switch the mirror off for itself (55P02)"
# set before the library loads, as a placeholder: discarded when it loads
sql "SET audit_ext.log_events = off; SELECT audit.record('mirror.placeholder')" >/dev/null 2>&1
sleep 0.5
lines=$(tail -c +$((start + 1)) "$log" | grep -o 'AUDIT: .*' || true)

assert_eq 1 "$(grep -c "^AUDIT: id=$id1 " <<<"$lines")" "a committed event is mirrored once"
expect=$(sql "SELECT format('AUDIT: id=%s chain=%s seq=%s at=%s action=mirror.ok status=success severity=info actor=postgres',
                            id, chain, seq, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))
              FROM audit.events WHERE id = $id1")
assert_match "^$expect " "$(grep "^AUDIT: id=$id1 " <<<"$lines")" "its line starts with id, chain, seq, at (UTC), action, status, severity, actor"
line1=$(grep "^AUDIT: id=$id1 " <<<"$lines")
hash=$(sql "SELECT encode(hash, 'hex') FROM audit.events WHERE id = $id1")
assert_match " object_id=\"d 1\" " "$line1" "a value with a space is quoted"
assert_match ' message="say \\"hi\\"\\nbye" ' "$line1" "quotes and newlines are escaped (one line per event)"
assert_match " hash=$hash\$" "$line1" "the line ends with the event's hash, as stored"
assert_eq 0 "$(grep -c 'action=mirror.rolledback' <<<"$lines")" "an event whose transaction rolled back is not mirrored"
assert_eq 0 "$(grep -c 'action=mirror.savepoint' <<<"$lines")" "an event rolled back to a savepoint is not mirrored"
assert_eq 1 "$(grep -c 'action=mirror.kept' <<<"$lines")" "the event before the savepoint is"
assert_eq 2 "$(grep -c 'action=row.insert .*module=capture object_type=table' <<<"$lines")" "captured row changes are mirrored like any event"
assert_match "action=capture.track" "$lines" "so are audit_ext's own events"
assert_eq 1 "$(grep -c 'action=mirror.placeholder' <<<"$lines")" "a placeholder set before the library loaded does not switch the mirror off"

sql "ALTER SYSTEM RESET audit_ext.log_events; SELECT pg_reload_conf()" >/dev/null
sleep 1
start=$(stat -c %s "$log")
sql "SELECT audit.record('mirror.off')" >/dev/null
sleep 0.5
assert_eq 0 "$(tail -c +$((start + 1)) "$log" | grep -c 'action=mirror.off' || true)" "with the setting off (the default) nothing is mirrored"
