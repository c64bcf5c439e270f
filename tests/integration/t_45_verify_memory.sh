# verify's memory stays flat for large events (issue 10): its temporary memory is reset by bytes
# as well as by rows. 150 events of about 1 MB in one chain: reset only every 500 rows, the
# backend grew by their whole size (600 such events took it to 617 MB); now it stays within a
# few resets' worth. Measured as the verifying backend's anonymous resident memory (RssAnon,
# which leaves out the shared buffers it reads through), polled while verify runs.
fresh_db audit_vmem
sql "ALTER DATABASE audit_vmem SET audit_ext.chains = 1" >/dev/null
sql "SET audit_ext.max_event_bytes = 4000000;
     SELECT count(audit.record('big.e', new => jsonb_build_object('blob',
              (SELECT string_agg(md5(i::text || g::text), '') FROM generate_series(1, 30000) g))))
     FROM generate_series(1, 150) i" >/dev/null
assert_eq "150" "$(sql "SELECT count(*) FROM audit.events WHERE action = 'big.e' AND octet_length(new::text) > 900000")" \
  "150 events of about 1 MB each are recorded"

psql -XAtq -c "SELECT pg_sleep(1.5)" -c "SELECT bool_and(ok) FROM audit.verify()" >"$T_RESULTS.vout" 2>&1 &
client=$!
pid=""
for _ in $(seq 1 40); do
  pid=$(sql "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
             AND backend_type = 'client backend' AND query LIKE 'SELECT pg_sleep(1.5)%' LIMIT 1")
  [ -n "$pid" ] && break
  sleep 0.05
done
base=0 peak=0
if [ -n "$pid" ]; then
  base=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
  while kill -0 "$client" 2>/dev/null; do
    kb=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ "${kb:-0}" -gt "$peak" ] && peak=$kb
    sleep 0.02
  done
fi
wait "$client" || true
assert_eq "t" "$(tail -n 1 "$T_RESULTS.vout")" "verify passes on the large events"
grown=$(( (peak - base) / 1024 ))
assert_eq "t" "$([ -n "$pid" ] && [ "$peak" -gt 0 ] && [ "$grown" -lt 64 ] && echo t || echo "f (pid ${pid:-none}, grew ${grown} MB)")" \
  "verify's backend grows by less than 64 MB over 150 MB of events (grew ${grown} MB)"
