# The upgrade path (issue 15): the previous release's frozen script (sql/audit_ext--0.1.0.sql)
# installs against today's library, keeps its events through ALTER EXTENSION audit_ext UPDATE
# (sql/audit_ext--0.1.0--0.2.0.sql), and leaves exactly the catalog a fresh install makes
# (tests/tools/catalog.sql prints every function with its body, table, view, trigger, event
# trigger, comment, privilege and role).
new=$(sql "SELECT default_version FROM pg_available_extensions WHERE name = 'audit_ext'" -d postgres)
old=0.1.0
assert_eq "$old $new" "$(sql "SELECT string_agg(version, ' ' ORDER BY version) FROM pg_available_extension_versions
                              WHERE name = 'audit_ext' AND version IN ('$old', '$new')" -d postgres)" \
  "the released $old and the current $new are both installable"

fresh_db audit_upgrade --no-extension
sql "CREATE EXTENSION audit_ext VERSION '$old'" >/dev/null
assert_eq "$old" "$(sql "SELECT extversion FROM pg_extension WHERE extname = 'audit_ext'")" "CREATE EXTENSION ... VERSION '$old'"
sql "CREATE TABLE public.acct (id int PRIMARY KEY, owner text, balance numeric);
     SELECT audit.track('public.acct');
     INSERT INTO public.acct VALUES (1, 'ann', 10), (2, 'bob', 20);
     UPDATE public.acct SET balance = 15 WHERE id = 1;
     SELECT audit.record('order.update', 'order', '42', new => '{\"total\": 5}');
     SELECT audit.create_alert('upg', 'action:order.*', 2);
     SELECT audit.record('order.update', 'order', '43')" >/dev/null
before=$(sql "SELECT count(*) FROM audit.events")
heads=$(sql "SELECT jsonb_agg(to_jsonb(h)) FROM audit.head() h")
assert_eq t "$(sql "SELECT bool_and(ok) FROM audit.verify() WHERE chain IS NOT NULL")" "the $old log's chains verify with the $new library"
assert_match "are version $old, its library $new: run ALTER EXTENSION audit_ext UPDATE" \
  "$(sql "SELECT reason FROM audit.verify() WHERE chain IS NULL")" \
  "until the update, verify says it cannot check the guards of a $old database (not ok)"

sql "ALTER EXTENSION audit_ext UPDATE" >/dev/null
assert_eq "$new" "$(sql "SELECT extversion FROM pg_extension WHERE extname = 'audit_ext'")" "ALTER EXTENSION audit_ext UPDATE reaches $new"
assert_eq "$((before + 1)) ddl.alter_extension" \
  "$(sql "SELECT count(*) || ' ' || max(action) FILTER (WHERE id > (SELECT max(id) FROM audit.events WHERE action = 'order.update')) FROM audit.events")" \
  "no event is lost by the update, which is itself recorded (ddl.alter_extension)"
assert_eq t "$(sql "SELECT bool_and(ok) FROM audit.verify(heads => '$heads')")" \
  "after the update the old events still verify, against the heads noted before it"

# the same catalog as a fresh install (made in another database of the same server)
sql "SELECT audit.untrack('public.acct'); SELECT audit.drop_alert('upg')" >/dev/null
tmp=$(mktemp -d)
psql -XAtq -v ON_ERROR_STOP=1 -f "$TOOLS/catalog.sql" >"$tmp/upgraded.txt"
fresh_db audit_upgrade_fresh
psql -XAtq -v ON_ERROR_STOP=1 -f "$TOOLS/catalog.sql" >"$tmp/fresh.txt"
if diff -u "$tmp/fresh.txt" "$tmp/upgraded.txt" >"$tmp/catalog.diff"; then
  ok "the updated catalog is exactly a fresh install's ($(grep -c '^function' "$tmp/fresh.txt") functions, every body, privilege and trigger)"
else
  fail "the updated catalog differs from a fresh install's"; head -n 40 "$tmp/catalog.diff" | sed 's/^/       /'
fi
export PGDATABASE=audit_upgrade

# what changed in this version works on the updated database
sql "SELECT audit.record('order.update', 'order', '44')" >/dev/null
assert_eq t "$(sql "SELECT bool_and(ok) FROM audit.verify()")" "events recorded after the update chain on and verify"
assert_match "^true\|[1-9]" "$(sql "SELECT bool_and(ok) || '|' || sum(events_checked) FROM audit.verify(since => '$heads')")" \
  "audit.verify(since => ...), new in 0.2.0, checks the events after the heads noted under 0.1.0"
assert_match "does not list" "$(sql "SELECT audit_internal._event('row.inserted', 'capture', 'table', NULL, 'x')" 2>&1 || true)" \
  "after the update an event name outside src/vocab.rs is refused (XX000)"
assert_eq 0 "$(sql "SELECT count(*) FROM audit_internal._guard_problems()")" "the guards row is clean on the updated database"
rm -rf "$tmp"
