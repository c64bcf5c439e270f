# audit.export (issue 12, section 1): every format read back with a parser from outside the
# project (jq and Python's json for jsonl, Python's csv, the published RFC 5424 parser
# syslog-rfc5424-parser from PyPI, installed by tests/tools/deps.sh), values with every
# special character coming back intact; id, chain, seq and hash on every line; the query and
# time range; who may export; errors.
ROOT=$(cd "$TOOLS/../.." && pwd)
export PYTHONPATH="$ROOT/.pylib"
tmp=$(mktemp -d); chmod 755 "$tmp"
fresh_db audit_export
sql "SET audit_ext.capture_ddl = off; CREATE ROLE exp_reader LOGIN; GRANT audit_reader TO exp_reader;
     CREATE ROLE exp_nobody LOGIN" -d postgres >/dev/null 2>&1 || true
nasty=$'pipe| back\\ eq= br] quote" nl\n cr\r tab\t uni é✓ end'
sql "SELECT audit.set_context(actor => 'ann \"the auditor\"', actor_ip => '10.1.2.3', application => 'exp app', local => false);
     SELECT audit.record('export.a', 'doc', 'id \"1\" ]x', 'Name | with = signs', old => '{\"k\": \"a\\\\b\"}',
                         new => '{\"k\": \"c\"}', message => \$m\$${nasty}\$m\$, module => 'billing');
     SELECT audit.record('export.b', message => '');
     SELECT audit.record('export.b', severity => 'critical', status => 'failure');
     SELECT audit.record('other.c', severity => 'debug')" >/dev/null
n=$(sql "SELECT count(*) FROM audit.events")
sql "SELECT json_agg(json_build_object('id', id, 'chain', chain, 'seq', seq, 'hash', encode(hash, 'hex'),
                      'actor', actor, 'actor_ip', host(actor_ip), 'action', action, 'message', message,
                      'object_id', object_id, 'object_name', object_name, 'module', module) ORDER BY id)
     FROM audit.events" >"$tmp/db.json"
out() { psql -XAtq -v ON_ERROR_STOP=1 -c "SELECT * FROM audit.export($1)"; }
# Each export is itself recorded (an audit.export event, module audit): the format checks export
# the events up to now, the ones db.json holds.
cut=$(sql "SELECT now()")

# jsonl: jq and Python read every line; the outside verifier verifies the export
out "'jsonl', until => '$cut'" >"$tmp/e.jsonl"
assert_eq "$n" "$(jq -c . "$tmp/e.jsonl" | wc -l)" "jsonl: jq parses one object per event ($n)"
assert_eq "ok" "$(python3 - "$tmp/e.jsonl" "$tmp/db.json" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding='utf-8')]
db = json.load(open(sys.argv[2], encoding='utf-8'))
ok = len(rows) == len(db) and all(r['id'] == d['id'] and r['message'] == d['message'] and r['hash'] == '\\x' + d['hash']
                                  for r, d in zip(rows, db))
print('ok' if ok else 'differ')
EOF
)" "jsonl: Python's json reads back every message byte for byte, with its id and hash"
assert_match ", 0 failed: ok$" "$(python3 "$TOOLS/verify_export.py" "$tmp/e.jsonl" 2>&1 | tail -n 1)" \
  "jsonl: tests/tools/verify_export.py verifies the export offline"

# csv: RFC 4180 read by Python's csv module
out "'csv', until => '$cut'" >"$tmp/e.csv"
assert_eq "ok" "$(python3 - "$tmp/e.csv" "$tmp/db.json" <<'EOF'
import csv, json, sys
with open(sys.argv[1], newline='', encoding='utf-8') as f:
    rows = list(csv.DictReader(f))
db = json.load(open(sys.argv[2], encoding='utf-8'))
ok = len(rows) == len(db) and all(
    int(r['id']) == d['id'] and int(r['chain']) == d['chain'] and int(r['seq']) == d['seq'] and r['hash'] == d['hash']
    and r['message'] == (d['message'] or '') and r['object_id'] == (d['object_id'] or '') and r['actor'] == d['actor']
    for r, d in zip(rows, db))
print('ok' if ok else 'differ')
EOF
)" "csv: Python's csv reads the header and every event back, newlines and quotes inside values included"
assert_match '^id,at,chain,seq,actor,' "$(head -n 1 "$tmp/e.csv")" "csv: the first line is the header"
assert_eq 1 "$(grep -c ',"",' "$tmp/e.csv" || true)" "csv: an empty message is \"\", apart from NULL (an empty field)"

# kv: shlex (POSIX shell quoting) splits each line into key=value; escapes decode to the value
out "'kv', until => '$cut'" >"$tmp/e.kv"
assert_eq "ok" "$(python3 - "$tmp/e.kv" "$tmp/db.json" <<'EOF'
import json, re, shlex, sys
db = json.load(open(sys.argv[2], encoding='utf-8'))
lines = open(sys.argv[1], encoding='utf-8').read().split('\n')[:-1]
def dec(v):
    return re.sub(r'\\(n|r|t|x[0-9a-f]{2})', lambda m: {'n': '\n', 'r': '\r', 't': '\t'}.get(m.group(1)) or chr(int(m.group(1)[1:], 16)), v)
ok = len(lines) == len(db)
for line, d in zip(lines, db):
    kv = dict(t.split('=', 1) for t in shlex.split(line))
    ok &= int(kv['id']) == d['id'] and int(kv['chain']) == d['chain'] and int(kv['seq']) == d['seq'] and kv['hash'] == d['hash']
    ok &= dec(kv.get('message', '')) == (d['message'] or '') and dec(kv.get('object_id', '')) == (d['object_id'] or '')
    ok &= kv.get('actor_ip') == d['actor_ip']
print('ok' if ok else 'differ')
EOF
)" "kv: one line per event, shlex splits it, every value decodes back"

# rfc5424: the published parser reads each line; the SD-ID audit_ext@32473 carries id, chain, seq, hash
out "'rfc5424', until => '$cut'" >"$tmp/e.syslog"
assert_eq "ok" "$(python3 - "$tmp/e.syslog" "$tmp/db.json" <<'EOF'
import json, re, sys
from syslog_rfc5424_parser import SyslogMessage
db = json.load(open(sys.argv[2], encoding='utf-8'))
lines = open(sys.argv[1], encoding='utf-8').read().split('\n')[:-1]
unesc = lambda v: re.sub(r'\\(["\\\]])', r'\1', v)
ok = len(lines) == len(db)
for line, d in zip(lines, db):
    m = SyslogMessage.parse(line).as_dict()
    sd = {k: unesc(v) for k, v in m['sd']['audit_ext@32473'].items()}
    ok &= m['appname'] == 'audit_ext' and m['facility'] == 'audit' and m['msgid'] == d['action'][:32]
    ok &= int(sd['id']) == d['id'] and int(sd['chain']) == d['chain'] and int(sd['seq']) == d['seq'] and sd['hash'] == d['hash']
    ok &= sd['actor'] == d['actor'] and sd.get('object_name') == d['object_name']
    ok &= sd.get('object_id', '').replace('\\n', '\n') == (d['object_id'] or '')
print('ok' if ok else 'differ')
EOF
)" "rfc5424: syslog-rfc5424-parser reads every line; structured data carries id, chain, seq, hash and the fields"
assert_match '^<110>1 .* audit_ext - export\.b \[audit_ext@32473 id=.*\]$' "$(sed -n 2p "$tmp/e.syslog")" \
  "rfc5424: PRI is facility 13 (log audit) x 8 + 6 (info); MSGID the action; an empty message leaves MSG out"
assert_match '^<106>1 ' "$(sed -n 3p "$tmp/e.syslog")" "rfc5424: a critical event has syslog severity 2"

# cef: header fields split on unescaped pipes, extension on unescaped key=
out "'cef', until => '$cut'" >"$tmp/e.cef"
assert_eq "ok" "$(python3 - "$tmp/e.cef" "$tmp/db.json" <<'EOF'
import json, re, sys
db = json.load(open(sys.argv[2], encoding='utf-8'))
lines = open(sys.argv[1], encoding='utf-8').read().split('\n')[:-1]
ok = len(lines) == len(db)
for line, d in zip(lines, db):
    head = re.findall(r'((?:[^|\\]|\\.)*)\|', line)[:7]
    ext = line[sum(len(h) + 1 for h in head):]
    pairs = re.findall(r'(\w+)=((?:[^=\\]|\\.)*?)(?= \w+=|$)', ext)
    val = {k: re.sub(r'\\(.)', lambda m: {'n': '\n', 'r': '\r'}.get(m.group(1), m.group(1)), v) for k, v in pairs}
    ok &= head[0] == 'CEF:0' and head[1] == 'audit_ext' and head[4] == d['action']
    ok &= int(val['externalId']) == d['id'] and val['cs1'] == str(d['chain']) and val['cs2'] == str(d['seq']) and val['cs3'] == d['hash']
    ok &= val.get('msg', '') == (d['message'] or '') and val.get('cs5', '') == (d['object_id'] or '') and val['suser'] == d['actor']
print('ok' if ok else 'differ')
EOF
)" "cef: header and extension split where the CEF escaping says, and every value decodes back"

# the query language and the time range
assert_eq 2 "$(out "'kv', 'action:export.b'" | wc -l)" "query: only matching events (the search language)"
assert_eq 0 "$(out "'kv', since => now() + interval '1 day'" | wc -l)" "since: nothing recorded from tomorrow on"
assert_eq "$(sql "SELECT count(*) FROM audit.events")" "$(out "'kv', until => now() + interval '1 day'" | wc -l)" "until: everything before tomorrow"
assert_eq "$(sql "SELECT string_agg(id::text, ',' ORDER BY id) FROM audit.events")" \
  "$(out "'kv'" | sed -E 's/^id=([0-9]+) .*/\1/' | paste -sd, -)" "lines come in id order"

# who may, and errors
assert_eq "$(sql "SELECT count(*) FROM audit.events")" "$(psql -XAtq -U exp_reader -c "SELECT count(*) FROM audit.export('kv')" | tail -n 1)" \
  "audit_reader may export"
sql_expect_error 42501 "SELECT count(*) FROM audit.export('jsonl')" "a role without audit_reader may not" -U exp_nobody
sql_expect_error 22023 "SELECT * FROM audit.export('xml')" "an unknown format is 22023"
sql_expect_error 22023 "SELECT * FROM audit.export('kv', since => now(), until => now() - interval '1 s')" "since after until is 22023"
sql_expect_error 42601 "SELECT * FROM audit.export('kv', 'action:(')" "a malformed query is 42601"

# flat memory: 200,000 events of about 1 KB exported (about 250 MB of JSON) while the
# exporting backend's anonymous resident memory (RssAnon) is polled
sql "SELECT count(audit.record('bulk.x', 'doc', i::text, message => repeat(md5(i::text), 24)))
     FROM generate_series(1, 200000) i" >/dev/null
m=$(sql "SELECT count(*) FROM audit.events")
grown=$(grown_mb "$tmp/copy.out" "COPY (SELECT * FROM audit.export('jsonl')) TO '/dev/null'")
assert_eq "COPY $m" "$(tail -n 1 "$tmp/copy.out")" "COPY of audit.export('jsonl') streams every event ($m)"
assert_eq "t" "$([[ $grown =~ ^-?[0-9]+$ ]] && [ "$grown" -lt 64 ] && echo t || echo "f (grew ${grown} MB)")" \
  "exporting 200,000 events (about 250 MB) grows the backend by less than 64 MB (grew ${grown} MB)"
rm -rf "$tmp"
