//! `#[pg_test]` units: encoding, validation, hashing. Each runs in a transaction that is
//! rolled back; commits, concurrency and crashes are in tests/integration. The pure encoder's
//! tests are plain `#[test]`s in crates/audit_core.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    const VECTOR_1: &str = "5874c3a55d8b053c1c2a459d5b77eebdf03381a9f05f4b0ac56be5ae809632b6";
    const VECTOR_2: &str = "8a2fda3ce5ab38ab0c8ad45a87a6e7ec112c5a612f87c5b15f832d7cefa67260";

    const VECTOR_1_ROW: &str = r#"row(42, '2026-03-10 14:30:45.123456+00', 1, 7, 'admin@company.com',
        '203.0.113.45', 'sess_abcdef123456', 'cloudpi', 'resource.modify', 'success', 'info',
        'compute', 'ec2_instance', 'i-0123456789abcdef', 'sales-reporting-app ☃ 🚀',
        '{"state": "running"}', '{"tags": ["a", "b"], "state": "stopped"}',
        E'Stopped by policy\n"quoted"',
        '{"request_id": "req_xyz789", "amount": 1.10, "big": 12345678901234567890.5}', 1000,
        '\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', NULL, 0)::audit.events"#;

    fn hex(sql: &str) -> String {
        Spi::get_one::<String>(sql).unwrap().unwrap()
    }

    /// Datums are reduced to the documented bytes whatever the session's settings.
    #[pg_test]
    fn hash_event_matches_vectors_under_any_settings() {
        let q = format!("select encode(audit.hash_event({VECTOR_1_ROW}), 'hex')");
        assert_eq!(hex(&q), VECTOR_1);
        Spi::run(
            "set local timezone = 'Pacific/Chatham'; set local datestyle = 'SQL, DMY'; \
                  set local extra_float_digits = -15; set local intervalstyle = 'iso_8601'",
        )
        .unwrap();
        assert_eq!(hex(&q), VECTOR_1);
        let v2 = "select encode(audit.hash_event(row(1, '2000-01-01 00:00:00+00', 0, 1, 'postgres', \
                  '2001:db8::1/64', NULL, NULL, 'authentication.login', 'failure', 'warning', NULL, NULL, \
                  NULL, NULL, NULL, NULL, NULL, '{}', 1, NULL, NULL, 0)::audit.events), 'hex')";
        assert_eq!(hex(v2), VECTOR_2);
    }

    #[pg_test]
    fn jsonb_key_order_does_not_matter() {
        let a = Spi::get_one::<i64>(r#"select audit.record('t.k', new => '{"b": 1, "a": {"y": 2, "x": 3}}')"#);
        let b = Spi::get_one::<i64>(r#"select audit.record('t.k', new => '{"a": {"x": 3, "y": 2}, "b": 1}')"#);
        let same = Spi::get_one::<bool>(&format!(
            "select (select new::text from audit.events where id = {}) = (select new::text from audit.events where id = {})",
            a.unwrap().unwrap(),
            b.unwrap().unwrap()
        ));
        assert_eq!(same, Ok(Some(true)));
    }

    #[pg_test]
    fn record_chains_and_hashes() {
        for i in 0..5 {
            Spi::run(&format!("select audit.record('test.chain', object_id => '{i}')")).unwrap();
        }
        let linked = Spi::get_one::<bool>(
            "select bool_and(e.hash = audit.hash_event(e) \
                 and e.seq = p.seq + 1 and e.prev_hash = p.hash and e.chain = p.chain) \
             from audit.events e join audit.events p on p.chain = e.chain and p.seq = e.seq - 1 \
             where e.action = 'test.chain' and p.action = 'test.chain'",
        );
        assert_eq!(linked, Ok(Some(true)));
        let one_chain =
            Spi::get_one::<i64>("select count(distinct chain) from audit.events where action = 'test.chain'");
        assert_eq!(one_chain, Ok(Some(1)), "one transaction stays on one chain");
        let ok = Spi::get_one::<bool>("select bool_and(ok) from audit.verify()");
        assert_eq!(ok, Ok(Some(true)));
    }

    #[pg_test]
    fn context_fills_actor_and_keeps_db_user() {
        Spi::run(
            "select audit.set_context(actor => 'alice', actor_ip => '10.1.2.3', session_id => 's1', \
             application => 'shop', metadata => '{\"tenant\": \"t1\"}')",
        )
        .unwrap();
        Spi::run(r#"select audit.record('ctx.test', metadata => '{"request_id": "r9"}')"#).unwrap();
        let row = Spi::get_one::<String>(
            "select concat_ws('|', actor, host(actor_ip), session_id, application, metadata->>'tenant', \
             metadata->>'request_id', metadata->>'db_user' = session_user) \
             from audit.events where action = 'ctx.test'",
        );
        assert_eq!(row, Ok(Some("alice|10.1.2.3|s1|shop|t1|r9|t".into())));
        Spi::run("select audit.set_context()").unwrap();
        Spi::run("select audit.record('ctx.cleared')").unwrap();
        let actor = Spi::get_one::<bool>(
            "select actor = session_user and not metadata ? 'db_user' from audit.events where action = 'ctx.cleared'",
        );
        assert_eq!(actor, Ok(Some(true)));
    }

    #[pg_test]
    fn unicode_and_long_names_are_stored_and_hashed() {
        let long = "é🚀".repeat(20_000);
        Spi::run(&format!("select audit.record('t.u', object_name => '{long}', message => 'ünïcödé ✓')")).unwrap();
        let ok = Spi::get_one::<bool>(&format!(
            "select object_name = '{long}' and hash = audit.hash_event(e) from audit.events e where action = 't.u'"
        ));
        assert_eq!(ok, Ok(Some(true)));
    }

    #[pg_test(error = "invalid action: it is empty")]
    fn empty_action_is_refused() {
        Spi::run("select audit.record('')").unwrap();
    }

    #[pg_test(error = "invalid action: it is 201 characters long, the limit is 200")]
    fn long_action_is_refused() {
        Spi::run(&format!("select audit.record('{}')", "a".repeat(201))).unwrap();
    }

    #[pg_test(error = "invalid status: \"ok\" is not one of success, failure, denied")]
    fn unknown_status_is_refused() {
        Spi::run("select audit.record('a.b', status => 'ok')").unwrap();
    }

    #[pg_test(error = "invalid severity: \"fatal\" is not one of debug, info, notice, warning, high, critical")]
    fn unknown_severity_is_refused() {
        Spi::run("select audit.record('a.b', severity => 'fatal')").unwrap();
    }

    #[pg_test(error = "invalid metadata: it must be a JSON object")]
    fn array_metadata_is_refused() {
        Spi::run("select audit.record('a.b', metadata => '[1, 2]')").unwrap();
    }

    /// Runs `sql` and returns `ok` or `SQLSTATE: message`.
    fn outcome(sql: &str) -> String {
        Spi::run(
            "create or replace function pg_temp.outcome(q text) returns text language plpgsql as $$ \
             begin execute q; return 'ok'; exception when others then return sqlstate || ': ' || sqlerrm; end $$",
        )
        .unwrap();
        Spi::get_one_with_args::<String>("select pg_temp.outcome($1)", &[sql.into()]).unwrap().unwrap()
    }

    #[pg_test]
    fn oversized_event_is_refused_and_nothing_is_written() {
        Spi::run("set local audit_ext.max_event_bytes = 2048").unwrap();
        let before = Spi::get_one::<i64>("select count(*) from audit.events").unwrap();
        let fits = outcome(&format!("select audit.record('a.b', message => '{}')", "x".repeat(1500)));
        assert_eq!(fits, "ok");
        let big = outcome(&format!("select audit.record('a.b', message => '{}')", "x".repeat(2100)));
        assert!(big.starts_with("54000: audit event is "), "{big}");
        assert!(big.ends_with("over the limit of 2048 bytes (audit_ext.max_event_bytes)"), "{big}");
        let after = Spi::get_one::<i64>("select count(*) from audit.events").unwrap();
        assert_eq!(after, before.map(|n| n + 1));
    }

    #[pg_test]
    fn bad_input_gets_sqlstates() {
        assert!(outcome("select audit.record('a.b', actor_ip => 'x')").starts_with("42883"), "no such parameter");
        assert!(outcome("select audit.set_context(actor_ip => '300.1.1.1')").starts_with("22P02"));
        // NUL bytes never reach the log: PostgreSQL refuses them in text and in jsonb.
        assert!(outcome(r#"select audit.record('a.b', new => '{"k": "\u0000"}')"#).starts_with("22P05"));
        assert!(outcome(r#"select audit.record('a.b', object_name => convert_from('\x6100', 'UTF8'))"#)
            .starts_with("22021"));
        assert!(outcome("select audit.record(null)").starts_with("22023: invalid action"));
        assert!(outcome("select audit.record('a.b', status => null)").starts_with("22023: invalid status: it is NULL"));
        assert!(outcome("select * from audit.verify(5, 1)").starts_with("22023: from_id 5 is greater than to_id 1"));
    }

    #[pg_test(error = "column \"hash\" of audit.events is assigned by audit_ext and cannot be supplied")]
    fn caller_hash_is_refused() {
        Spi::run("insert into audit.events (action, hash) values ('a.b', '\\x00')").unwrap();
    }

    #[pg_test(error = "audit.events is append-only: UPDATE is not allowed")]
    fn update_is_refused_even_for_superuser() {
        Spi::run("select audit.record('a.b')").unwrap();
        Spi::run("update audit.events set message = 'x'").unwrap();
    }

    /// Direct INSERTs by a privileged role are chained like audit.record's.
    #[pg_test]
    fn direct_insert_is_chained() {
        Spi::run("insert into audit.events (action, object_id) values ('direct.insert', 'x')").unwrap();
        let ok = Spi::get_one::<bool>(
            "select seq >= 1 and hash = audit.hash_event(e) and actor = session_user \
             from audit.events e where action = 'direct.insert'",
        );
        assert_eq!(ok, Ok(Some(true)));
    }

    /// Tampering with the guards off (as a superuser who disabled the event trigger first) is
    /// caught, and verify names the event.
    #[pg_test]
    fn verify_points_at_a_changed_event() {
        let ids: Vec<i64> = (0..4)
            .map(|i| Spi::get_one::<i64>(&format!("select audit.record('t.v', object_id => '{i}')")).unwrap().unwrap())
            .collect();
        // replica mode no longer skips the guards (they are enabled ALWAYS): switch them off
        Spi::run("alter event trigger audit_ext_ddl_command disable").unwrap();
        Spi::run("alter table audit.events disable trigger append_only").unwrap();
        Spi::run(&format!("update audit.events set status = 'denied' where id = {}", ids[2])).unwrap();
        Spi::run("alter table audit.events enable always trigger append_only").unwrap();
        Spi::run("alter event trigger audit_ext_ddl_command enable always").unwrap();
        let bad = Spi::get_two::<i64, String>("select first_bad_id, reason from audit.verify() where not ok");
        let (id, reason) = bad.unwrap();
        assert_eq!(id, Some(ids[2]));
        assert!(reason.unwrap().starts_with("hash mismatch"));
    }

    #[pg_test(error = "invalid heads: a head's \"hash\" is not 32 bytes of hex such as \"\\\\x3f2a...\"")]
    fn malformed_heads_are_refused() {
        Spi::run(r#"select * from audit.verify(heads => '[{"chain": 0, "seq": 1, "hash": "zz"}]')"#).unwrap();
    }

    #[pg_test]
    fn each_retention_class_has_its_own_chains_and_partitions() {
        Spi::run("select audit.set_retention('30 days', 'page.*')").unwrap();
        Spi::run("select audit.set_retention(null, 'page.legal')").unwrap();
        let classes = Spi::get_one::<String>(
            "select string_agg(audit.retention_class(a)::text, ',' order by a) \
             from unnest(array['page.view', 'page.legal', 'pages.x', 'x']) a",
        );
        assert_eq!(classes, Ok(Some("2,1,0,0".into())), "the most specific pattern wins");
        // one transaction writing two classes: a chain of each class, each in its partitions
        Spi::run("select audit.record('page.view'), audit.record('x.y'), audit.record('page.view')").unwrap();
        let placed = Spi::get_one::<String>(
            "select string_agg(format('%s:%s:%s:%s', action, retention_class, chain / 1000, seq), ',' order by id) \
             from audit.events where action in ('page.view', 'x.y')",
        );
        let placed = placed.unwrap().unwrap();
        let parts: Vec<&str> = placed.split(',').collect();
        assert_eq!(parts.len(), 3);
        assert!(parts[0].starts_with("page.view:1:1:") && parts[2].starts_with("page.view:1:1:"), "{placed}");
        assert!(parts[1].starts_with("x.y:0:0:"), "{placed}");
        let own = Spi::get_one::<bool>(
            "select bool_and(tableoid::regclass::text like 'audit.events\\_' || retention_class || '\\_%') \
             from audit.events where action in ('page.view', 'x.y')",
        );
        assert_eq!(own, Ok(Some(true)), "each event is in a partition of its class");
        assert_eq!(Spi::get_one::<bool>("select bool_and(ok) from audit.verify()"), Ok(Some(true)));
    }

    #[pg_test]
    fn record_returns_its_own_id_when_an_alert_fires() {
        // the alert's own event is inserted (by an AFTER trigger) during the recorded one's
        // INSERT: audit.record must still return the id of the event it recorded
        Spi::run("select audit.create_alert('every-login', 'action:test.login', threshold => 1)").unwrap();
        let id = Spi::get_one::<i64>("select audit.record('test.login')").unwrap().unwrap();
        let action = Spi::get_one::<String>(&format!("select action from audit.events where id = {id}"));
        assert_eq!(action, Ok(Some("test.login".into())));
        let fired = Spi::get_one::<i64>("select count(*) from audit.events where action = 'alert.fired'");
        assert_eq!(fired, Ok(Some(1)), "the alert did fire within the call");
    }

    #[pg_test(error = "invalid action pattern \"*.login\"")]
    fn bad_retention_pattern_is_refused() {
        Spi::run("select audit.set_retention('1 day', '*.login')").unwrap();
    }

    /// The raw layer reads a value only as its own type: a misread is an error, not garbage.
    #[pg_test(error = "audit_ext: a value of type 23 read as bytes")]
    fn value_read_as_another_type_is_an_error() {
        crate::pg::value::Value::from_int4(7).bytes();
    }

    /// A hand-written C function declared with other argument types than its Rust body reads
    /// (an edited CREATE FUNCTION) is refused on its first call instead of misreading datums.
    #[pg_test(error = "audit_ext: function bad_depth is declared with other argument types than its C code takes")]
    fn c_function_declared_with_other_types_is_refused() {
        Spi::run(
            "create function public.bad_depth(int) returns jsonb language c strict \
             as '$libdir/audit_ext', 'audit_depth_checked'",
        )
        .unwrap();
        Spi::run("select public.bad_depth(1)").unwrap();
    }

    /// A kept plan is executed only with values of its parameter types.
    #[pg_test(error = "audit_ext: parameter $1 of type 23 given a value of type 25")]
    fn plan_executed_with_other_types_is_refused() {
        let spi = crate::pg::spi::Connection::open();
        let plan = spi.prepare(c"select $1", &[pgrx::pg_sys::INT4OID]);
        spi.execute(&plan, &[Some(crate::pg::value::Value::from_text(b"x"))], true);
    }
}
