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

grown=$(grown_mb "$T_RESULTS.vout" "SELECT bool_and(ok) FROM audit.verify()")
assert_eq "t" "$(tail -n 1 "$T_RESULTS.vout")" "verify passes on the large events"
assert_eq "t" "$([[ $grown =~ ^-?[0-9]+$ ]] && [ "$grown" -lt 64 ] && echo t || echo "f (grew ${grown} MB)")" \
  "verify's backend grows by less than 64 MB over 150 MB of events (grew ${grown} MB)"
