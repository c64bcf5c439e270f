# Signed checkpoints (issue 12, section 3): audit.checkpoint() signs every chain's head with
# the extension's Ed25519 key; an outside Ed25519 implementation (Python's `cryptography`,
# from PyPI via tests/tools/deps.sh) verifies the signature over the exact payload; a
# superuser who rewrites a chain and hashes it again, which plain audit.verify() cannot see,
# is caught by an earlier checkpoint; an edited payload, a foreign key or another database's
# checkpoint is not relied on; rotation keeps old checkpoints verifiable; who may do what.
ROOT=$(cd "$TOOLS/../.." && pwd)
export PYTHONPATH="$ROOT/.pylib"
fresh_db audit_cp
sql "ALTER DATABASE audit_cp SET audit_ext.chains = 1" >/dev/null
sql "SET audit_ext.capture_ddl = off; CREATE ROLE cp_admin LOGIN; GRANT audit_admin TO cp_admin;
     CREATE ROLE cp_reader LOGIN; GRANT audit_reader TO cp_reader" -d postgres >/dev/null 2>&1 || true
sql "SELECT count(audit.record('cp.e', 'doc', i::text, message => 'event ' || i)) FROM generate_series(1, 20) i" >/dev/null

before=$(sql "SELECT json_agg(json_build_object('chain', chain, 'seq', seq, 'hash', encode(hash, 'hex')) ORDER BY chain)::text FROM audit.head()" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin), sort_keys=True))')
cp=$(psql -XAtq -U cp_admin -c "SELECT audit.checkpoint()")
pub=$(psql -XAtq -U cp_reader -c "SELECT audit.signing_key()")
assert_match '^[0-9a-f]{64}$' "$pub" "audit.signing_key() gives the public key (32 bytes, hex) to a reader"
assert_eq "ok" "$(python3 - "$cp" "$pub" <<'EOF'
import json, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
cp = json.loads(sys.argv[1])
key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(sys.argv[2]))
key.verify(bytes.fromhex(cp['signature']), cp['payload'].encode('utf-8'))   # raises if bad
p = json.loads(cp['payload'])
assert cp['public_key'] == sys.argv[2] and p['format'] == 'audit_ext checkpoint v1'
assert list(p) == ['format', 'database', 'at', 'chains'] and p['chains'] and all(set(c) == {'chain', 'seq', 'hash', 'events'} for c in p['chains'])
print('ok')
EOF
)" "an outside Ed25519 implementation verifies the signature over the exact payload"
assert_eq "$before" "$(python3 -c 'import json,sys; print(json.dumps([{k: c[k] for k in ("chain","seq","hash")} for c in json.loads(json.loads(sys.argv[1])["payload"])["chains"]], sort_keys=True))' "$cp")" \
  "the payload holds every chain's head as audit.head() gave it just before"
assert_eq 1 "$(sql "SELECT count(*) FROM audit.events WHERE action = 'audit.checkpoint' AND module = 'audit' AND new = '$cp'::jsonb")" \
  "the checkpoint is recorded as an event (audit.checkpoint)"
assert_eq "t" "$(psql -XAtq -U cp_reader -c "SELECT bool_and(ok) FROM audit.verify(checkpoint => '$cp')")" \
  "a reader verifies the log against the checkpoint"
assert_match "signature valid \(the current key" "$(psql -XAtq -U cp_reader -c "SELECT reason FROM audit.verify(checkpoint => '$cp') WHERE chain IS NULL")" \
  "verify's checkpoint row says the signature is valid and whose key made it"

# A superuser rewrites event 5 and hashes the chain again from there: verify() alone is
# satisfied, the checkpoint is not.
chain=$(sql "SELECT chain FROM audit.events WHERE action = 'cp.e' LIMIT 1")
tamper "UPDATE audit.events SET message = 'rewritten' WHERE chain = $chain AND seq = 5;
        DO \$\$ DECLARE r record; prev bytea; BEGIN
          FOR r IN SELECT id, seq FROM audit.events WHERE chain = $chain AND seq >= 5 ORDER BY seq LOOP
            SELECT hash INTO prev FROM audit.events WHERE chain = $chain AND seq = r.seq - 1;
            UPDATE audit.events e SET prev_hash = prev WHERE e.id = r.id;
            UPDATE audit.events e SET hash = audit.hash_event(e) WHERE e.id = r.id;
          END LOOP; END \$\$"
assert_eq "t" "$(sql "SELECT bool_and(ok) FROM audit.verify()")" "a rewrite hashed again passes plain verify (the reason checkpoints exist)"
assert_match "noted head" "$(sql "SELECT string_agg(reason, '; ') FROM audit.verify(checkpoint => '$cp') WHERE NOT ok")" \
  "the earlier checkpoint catches the rewritten chain"
assert_eq "f" "$(sql "SELECT bool_and(ok) FROM audit.verify(checkpoint => '$cp')")" "and verify against it fails"

# An edited payload, a foreign key, another database
edited=$(python3 -c 'import json,sys; c=json.loads(sys.argv[1]); p=json.loads(c["payload"]); p["chains"][0]["seq"]=1; c["payload"]=json.dumps(p, separators=(",", ":")); print(json.dumps(c))' "$cp")
assert_match "signature does not match" "$(sql "SELECT reason FROM audit.verify(checkpoint => '$edited') WHERE chain IS NULL")" \
  "an edited payload fails the signature"
foreign=$(python3 - "$cp" <<'EOF'
import json, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
c = json.loads(sys.argv[1]); k = Ed25519PrivateKey.generate()
c['signature'] = k.sign(c['payload'].encode()).hex()
c['public_key'] = k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
print(json.dumps(c))
EOF
)
assert_match "not one of this log's keys" "$(sql "SELECT reason FROM audit.verify(checkpoint => '$foreign') WHERE chain IS NULL")" \
  "a checkpoint re-signed with a key of someone else's is not relied on"
other=$(PGDATABASE=postgres sql "SELECT 1" >/dev/null; fresh_db audit_cp_other >/dev/null; sql "SELECT audit.checkpoint()")
export PGDATABASE=audit_cp
assert_match "is of database audit_cp_other" "$(sql "SELECT reason FROM audit.verify(checkpoint => '$other') WHERE chain IS NULL" 2>&1)" \
  "another database's checkpoint is not relied on"
sql_expect_error 22023 "SELECT * FROM audit.verify(checkpoint => '{\"payload\": 1}')" "a malformed checkpoint is 22023"

# Rotation: recorded; checkpoints signed with the retired key still verify their signature
new=$(psql -XAtq -U cp_admin -c "SELECT audit.rotate_signing_key()")
assert_eq "$new" "$(sql "SELECT audit.signing_key()")" "audit.rotate_signing_key() makes a new current key"
assert_eq 1 "$(sql "SELECT count(*) FROM audit.events WHERE action = 'audit.key_rotated' AND old ->> 'public_key' = '$pub' AND new ->> 'public_key' = '$new'")" \
  "the rotation is recorded with both public keys"
assert_match "signature valid \(a key retired at" "$(sql "SELECT reason FROM audit.verify(checkpoint => '$cp') WHERE chain IS NULL")" \
  "a checkpoint of the retired key still has a valid signature"

# Who may
sql_expect_error 42501 "SELECT audit.checkpoint()" "a reader cannot make checkpoints" -U cp_reader
sql_expect_error 42501 "SELECT secret_key FROM audit.signing_keys" "nobody but the owner reads the secret key (not an admin)" -U cp_admin
sql_expect_error 22023 "SELECT audit.record('audit.checkpoint', module => 'x')" "audit.record refuses audit_ext's own event names (22023)"

# The outside verifier checks an export against a checkpoint and the noted public key
fresh_db audit_cp_out
sql "SELECT count(audit.record('cp.o', message => 'o ' || i)) FROM generate_series(1, 10) i" >/dev/null
tmp=$(mktemp -d)
sql "SELECT audit.checkpoint()" >"$tmp/cp.json"
k=$(sql "SELECT audit.signing_key()")
psql -XAtq -c "SELECT * FROM audit.export('jsonl')" >"$tmp/e.jsonl"
assert_match "signature valid, [0-9]+ chain head\(s\), 0 failed: ok" \
  "$(python3 "$TOOLS/verify_export.py" --checkpoint "$tmp/cp.json" --public-key "$k" "$tmp/e.jsonl" | tail -n 1)" \
  "verify_export.py verifies an export against the checkpoint and the public key"
tamper "UPDATE audit.events SET message = 'x' WHERE action = 'cp.o' AND message = 'o 10';
        UPDATE audit.events e SET hash = audit.hash_event(e) WHERE action = 'cp.o' AND message = 'x'"
psql -XAtq -c "SELECT * FROM audit.export('jsonl')" >"$tmp/e2.jsonl"
out=$(python3 "$TOOLS/verify_export.py" --checkpoint "$tmp/cp.json" --public-key "$k" "$tmp/e2.jsonl" || true)
assert_match "has changed since the checkpoint" "$out" "and finds a head rewritten after it"
assert_match "signature does not verify" \
  "$(python3 "$TOOLS/verify_export.py" --checkpoint "$tmp/cp.json" --public-key "$(printf '%064d' 0 | tr 0 1)" "$tmp/e.jsonl" || true)" \
  "a checkpoint does not verify with another key"
rm -rf "$tmp"
