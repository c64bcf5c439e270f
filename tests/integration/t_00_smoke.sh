# Smoke test of the harness (sourced by run.sh with lib.sh loaded); replace freely.
assert_eq 1 "$(sql 'SELECT 1')" "SELECT 1 works"
sql_expect_error 42P01 "SELECT * FROM no_such_table" "missing table raises 42P01"

if ext_available; then
  fresh_db audit_smoke
  assert_eq 1 "$(sql "SELECT count(*) FROM pg_extension WHERE extname = 'audit_ext'")" \
    "CREATE EXTENSION audit_ext"
  assert_eq 1 "$(sql "SELECT count(*) FROM pg_namespace WHERE nspname = 'audit'")" \
    "extension created schema audit"
else
  skip "audit_ext is not installed in this server"
fi
