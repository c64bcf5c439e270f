# Compliance reports (issue 13, section 4, the jsonb report): audit.report(framework, since,
# until) for every framework, read with Python's json; each section's count equals what its
# own query returns when an auditor reruns it; retention findings against each framework's
# minimum; integrity from verify, a tampered event found; the report itself recorded; who may
# run it.

T_TMP=$(mktemp -d); trap 'rm -rf "$T_TMP"' EXIT
roles="rep_reader rep_writer rep_viewer rep_admin"
PGOPTIONS="-c client_min_messages=warning" sql "DROP DATABASE IF EXISTS audit_report WITH (FORCE)" -d postgres
PGOPTIONS="-c client_min_messages=warning" sql "DROP ROLE IF EXISTS $(echo $roles | tr ' ' ',')" -d postgres
sql "CREATE ROLE rep_reader LOGIN IN ROLE audit_reader; CREATE ROLE rep_writer LOGIN IN ROLE audit_writer;
     CREATE ROLE rep_viewer LOGIN IN ROLE audit_viewer; CREATE ROLE rep_admin LOGIN IN ROLE audit_admin" -d postgres >/dev/null
fresh_db audit_report
as_role() { local r=$1; shift; psql -XAtq -v ON_ERROR_STOP=1 -U "$r" "$@"; }

t0=$(sql "SELECT now()")
# a period's worth of what auditors ask about
sql "SELECT audit.record('authentication.login', status => 'failure', object_id => 'mallory');
     SELECT audit.record('authentication.login', status => 'failure', object_id => 'mallory');
     SELECT audit.record('authentication.login', status => 'success', object_id => 'alice');
     SELECT audit.record('document.read', status => 'denied', object_id => 'd1');
     SELECT audit.record('permission.grant', object_id => 'alice');
     CREATE TABLE public.cards (id int PRIMARY KEY, pan text, note text);
     CREATE TABLE public.notes (id int PRIMARY KEY, body text);
     SELECT audit.track('public.cards', mask_columns => '{pan}');
     SELECT audit.track('public.notes');
     GRANT SELECT ON public.notes TO rep_reader;
     INSERT INTO public.cards VALUES (1, '4111111111111111', 'x'), (2, '5500000000000004', 'y');
     INSERT INTO public.notes VALUES (1, 'n');
     SELECT audit.create_alert('failures', 'status:failure', 1, '1 hour');
     SELECT audit.record('job.failed', status => 'failure');
     SELECT audit.set_retention('30 days', 'document.*')" >/dev/null
t1=$(sql "SELECT clock_timestamp()")
sql "SELECT audit.record('after.the.period', status => 'failure')" >/dev/null

for fw in soc2 iso27001 hipaa pci_dss gdpr; do
  # (made under a day-first DateStyle and a far time zone: the queries must still rerun anywhere)
  PGOPTIONS="-c DateStyle=SQL,DMY -c TimeZone=Pacific/Chatham -c IntervalStyle=iso_8601" \
    sql "SELECT audit.report('$fw', '$t0', '$t1')" >"$T_TMP/report_$fw.json"
done
check=$(python3 - "$T_TMP" <<'PY'
import json, sys
d = sys.argv[1]
out = []
for fw in ["soc2", "iso27001", "hipaa", "pci_dss", "gdpr"]:
    r = json.load(open(f"{d}/report_{fw}.json"))
    keys = all(k in r for k in ("framework", "period", "generated_at", "integrity", "sections"))
    ids = [s["id"] for s in r["sections"]]
    controls = all(s.get("control") for s in r["sections"]) and bool(r["integrity"].get("control"))
    fields = all(all(k in s for k in ("id", "title", "control", "query", "count", "findings")) for s in r["sections"])
    out.append(f"{fw}:{r['framework'] == fw and keys}:{','.join(ids)}:{controls}:{fields}:{r['integrity']['ok']}")
print("\n".join(out))
PY
)
want="access_changes,privileged_actions,failed_access,data_changes,audit_settings,alerts,retention"
for fw in soc2 iso27001 hipaa pci_dss gdpr; do
  assert_eq "$fw:True:$want:True:True:True" "$(grep "^$fw:" <<<"$check")" \
    "the $fw report has framework, period, generated_at, integrity and every section with its control, query, count and findings"
done

# each count is what the section's own query returns, rerun by the auditor (as audit_reader)
reruns=$(python3 - "$T_TMP/report_pci_dss.json" <<'PY' | while IFS=$'\t' read -r id count query; do
import json, sys
for s in json.load(open(sys.argv[1]))["sections"]:
    if s["id"] != "retention":
        print(f"{s['id']}\t{s['count']}\t{s['query']}")
PY
  got=$(as_role rep_reader -c "SELECT count(*) FROM ($query) q")
  if [ "$got" = "$count" ]; then printf '%s ' "$id"; else printf '%s(report %s, rerun %s) ' "$id" "$count" "$got"; fi
done)
assert_eq "access_changes privileged_actions failed_access data_changes audit_settings alerts " "$reruns" \
  "every section's count is what its query returns when an auditor reruns it"
assert_eq "3|2|4|3|1" "$(python3 - "$T_TMP/report_pci_dss.json" <<'PY'
import json, sys
s = {x["id"]: x for x in json.load(open(sys.argv[1]))["sections"]}
print("|".join(str(s[k]["count"]) for k in ("failed_access", "access_changes", "audit_settings", "data_changes", "alerts")))
PY
)" "the counts are those of the period: 3 failed or denied, 2 access changes (one recorded, one a real GRANT), 4 audit setting changes (2 trackings, an alert, a policy), 3 row changes, 1 alert fired"
assert_eq "public.cards:2:True public.notes:1:False" "$(python3 - "$T_TMP/report_pci_dss.json" <<'PY'
import json, sys
s = {x["id"]: x for x in json.load(open(sys.argv[1]))["sections"]}
print(" ".join(f"{f['table']}:{f['events']}:{f['regulated']}" for f in s["data_changes"]["findings"]))
PY
)" "changes to tracked tables name each table, and flag the one with masked columns as regulated"
assert_match '"actor": "postgres", "events": 3' "$(python3 -c "import json,sys; print(json.dumps([s for s in json.load(open('$T_TMP/report_pci_dss.json'))['sections'] if s['id']=='failed_access'][0]['findings']))")" \
  "findings name who did it, and how often"

# retention against each framework's minimum
rfind() { python3 -c "import json; print(' | '.join([s for s in json.load(open('$T_TMP/report_$1.json'))['sections'] if s['id']=='retention'][0]['findings']))"; }
assert_match "policy document.\* keeps events 30 days, less than the 1 year pci_dss asks for" "$(rfind pci_dss)" \
  "PCI DSS: a 30-day policy is a finding against twelve months"
assert_match "less than the 3 mons at hand pci_dss asks for" "$(rfind pci_dss)" "and against the three months at hand"
assert_match "policy \* keeps events 365 days, less than the 6 years hipaa asks for" "$(rfind hipaa)" \
  "HIPAA: the default year is a finding against six years"
assert_eq "" "$(rfind iso27001)" "ISO 27001 sets no number: no retention finding"
sql "SELECT audit.set_retention(NULL, 'document.*')" >/dev/null
sql "SELECT audit.report('gdpr', '$t0', NULL)" >"$T_TMP/report_gdpr2.json"
assert_match "policy document.\* keeps events forever: no minimum; the storage limitation principle" "$(rfind gdpr2)" \
  "GDPR: keeping events forever is a finding (storage limitation)"

# integrity
bad=$(sql "SELECT id FROM audit.events WHERE action = 'permission.grant' AND object_id = 'alice'")
tamper "UPDATE audit.events SET object_id = 'mallory' WHERE id = $bad" >/dev/null
assert_eq "False|$bad" "$(sql "SELECT audit.report('soc2', '$t0', '$t1')" | python3 -c "import json,sys; i=json.load(sys.stdin)['integrity']; print(i['ok'], [p['first_bad_id'] for p in i['problems'] if p['chain'] is not None][0], sep='|')")" \
  "a rewritten event of the period makes integrity not ok, naming it"
tamper "UPDATE audit.events SET object_id = 'alice' WHERE id = $bad" >/dev/null
sql "SELECT audit.checkpoint()" >/dev/null
assert_match '"public_key"' "$(sql "SELECT audit.report('soc2', '$t0', NULL) -> 'integrity' -> 'latest_checkpoint'")" \
  "the latest checkpoint is named"

# the report is itself recorded; elsewhere mirrored to the log
n=$(sql "SELECT count(*) FROM audit.events WHERE action = 'audit.report'")
as_role rep_reader -c "SELECT audit.report('hipaa', '$t0', '$t1')" >/dev/null
assert_eq "rep_reader|hipaa|audit" "$(sql "SELECT actor, object_id, module FROM audit.events WHERE action = 'audit.report' ORDER BY id DESC LIMIT 1")" \
  "generating a report is recorded (audit.report), with who ran it"
assert_eq "$((n + 1))" "$(sql "SELECT count(*) FROM audit.events WHERE action = 'audit.report'")" "once per report"
assert_eq "hipaa" "$(as_role rep_reader -c "BEGIN READ ONLY; SELECT audit.report('hipaa', '$t0', '$t1') ->> 'framework'; COMMIT")" \
  "in a read-only transaction the report is still made"
assert_eq "$((n + 1))" "$(sql "SELECT count(*) FROM audit.events WHERE action = 'audit.report'")" "and not recorded (it goes to the server log)"

# errors and rights
sql_expect_error 22023 "SELECT audit.report('sox')" "an unknown framework is 22023"
sql_expect_error 22023 "SELECT audit.report('soc2', now(), now() - interval '1 day')" "a period that ends before it starts is 22023"
sql_expect_error 42501 "SELECT audit.report('soc2')" "a writer may not run reports" -U rep_writer
sql_expect_error 42501 "SELECT audit.report('soc2')" "nor may a viewer, who sees only its own events" -U rep_viewer
assert_eq "soc2" "$(as_role rep_admin -c "SELECT audit.report('soc2') ->> 'framework'")" "audit_admin may (it is a reader)"

# ---- the same report as a standalone HTML page, rendered by a real browser -------------------
sql "BEGIN; SELECT audit.set_context(actor => '<img src=x onerror=alert(1)>');
     SELECT audit.record('authentication.login', status => 'failure'); COMMIT" >/dev/null
n=$(sql "SELECT count(*) FROM audit.events WHERE action = 'audit.report'")
as_role rep_reader -c "SELECT audit.report_html('pci_dss', '$t0', NULL)" >"$T_TMP/report.html"
assert_eq "$((n + 1))" "$(sql "SELECT count(*) FROM audit.events WHERE action = 'audit.report'")" "report_html is recorded as a report"
assert_eq "0" "$(grep -oE '<[^>]+ (src|href)=' "$T_TMP/report.html" | wc -l)" "the page loads nothing from outside (no element with src or href)"
chmod -R a+rX "$T_TMP"
if ! command -v chromium >/dev/null; then skip "chromium is not installed (tests/tools/deps.sh installs it)"; else
  timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --user-data-dir="$T_TMP/chromium" --dump-dom "file://$T_TMP/report.html" 2>/dev/null >"$T_TMP/dom.html"
  # (the bars the chart must have: one per day and status with events in the period, as the browser parsed them)
  want=$(sql "SELECT count(*) FROM (SELECT DISTINCT date_trunc('day', at AT TIME ZONE 'UTC'), status FROM audit.events
              WHERE at >= '$t0' AND action <> 'audit.report') x")
  assert_eq "$want" "$(grep -o '<rect class="bar"' "$T_TMP/dom.html" | wc -l)" \
    "Chromium renders the chart of events per day and status: one bar per day and status"
  assert_eq "1" "$(grep -o '<svg id="events-per-day"' "$T_TMP/dom.html" | wc -l)" "inline SVG, parsed as the page's own element"
  assert_eq "7" "$(grep -o '<section id="section-' "$T_TMP/dom.html" | wc -l)" "every section is on the page"
  assert_match 'id="integrity" class="ok">Intact' "$(cat "$T_TMP/dom.html")" "with the integrity of the period"
  assert_eq "0" "$(grep -o '<img' "$T_TMP/dom.html" | wc -l)" "an actor named <img src=x onerror=...> is text on the page, not an element"
  assert_match "&lt;img src=x onerror=alert\(1\)&gt;" "$(cat "$T_TMP/dom.html")" "and is shown, escaped"
  timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --user-data-dir="$T_TMP/chromium" --print-to-pdf="$T_TMP/report.pdf" "file://$T_TMP/report.html" \
    >/dev/null 2>&1 || true
  assert_eq "%PDF" "$(head -c 4 "$T_TMP/report.pdf" 2>/dev/null)" "and prints it to PDF"
fi
sql_expect_error 42501 "SELECT audit.report_html('soc2')" "report_html needs audit_reader too" -U rep_viewer
