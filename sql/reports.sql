-- audit_ext: compliance reports (README "Compliance reports"). audit.report(framework, since,
-- until) gathers, for one period, what an auditor of SOC 2, ISO 27001, HIPAA, PCI DSS or GDPR
-- asks to see: integrity of the log, access and permission changes, privileged actions, failed
-- and denied access, changes to tracked tables, changes of audit settings, alerts, and
-- retention against the framework's minimum. Every section names the control it serves and
-- the query behind its count, so the auditor can rerun it. The mapping of sections to
-- controls is audit_ext's reading of each framework, for orientation, not legal advice.

-- What the sections count: a predicate over `e` (a row of audit.events), fixed text that the
-- report splices into its queries (no caller value is ever part of it).
CREATE FUNCTION audit_internal._report_sections() RETURNS TABLE (id text, title text, predicate text)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
    VALUES
    ('access_changes', 'Access and permission changes',
     $p$(e.action LIKE 'permission.%' OR e.action LIKE 'role.%' OR e.action IN ('audit.view_allowed', 'audit.view_disallowed'))$p$),
    ('privileged_actions', 'Privileged actions: schema changes, server and database settings',
     $p$(e.module = 'ddl' OR e.action LIKE 'setting.%')$p$),
    ('failed_access', 'Failed and denied authentication and access',
     $p$((e.action LIKE 'authentication.%' AND e.status <> 'success') OR e.status = 'denied')$p$),
    ('data_changes', 'Changes to tracked tables',
     $p$(e.module = 'capture' AND e.action IN ('row.insert', 'row.update', 'row.delete', 'table.truncate'))$p$),
    ('audit_settings', 'Changes to audit settings',
     $p$(e.action IN ('capture.track', 'capture.untrack', 'retention.set', 'retention.tier', 'alert.create', 'alert.drop',
                     'alert.enable', 'alert.disable', 'stream.create', 'stream.drop', 'audit.checkpoint',
                     'audit.key_rotated', 'ddl.alter_extension')
       OR (e.action LIKE 'setting.%' AND e.object_id LIKE 'audit\_ext.%'))$p$),
    ('alerts', 'Alert firings', $p$(e.action = 'alert.fired')$p$)
$$;

-- The frameworks: the control each section serves, and what the framework asks of retention
-- (min_keep: how long events must be kept, NULL when the framework sets no number;
-- max_keep_finding: whether keeping forever is itself a finding). The sources are in the
-- README, "Compliance reports".
CREATE FUNCTION audit_internal._report_frameworks()
RETURNS TABLE (framework text, title text, min_keep interval, min_at_hand interval, forever_is_finding boolean,
               retention_rule text, controls jsonb)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
    VALUES
    ('soc2', 'SOC 2 (Trust Services Criteria 2017, revised 2022)', interval '1 year', NULL::interval, false,
     'no fixed period in the criteria; one year covers a Type II observation period (audit_ext''s assumption)',
     '{"integrity": "CC7.2 (monitoring; protection of log information)",
       "access_changes": "CC6.2, CC6.3 (provisioning and removal of access)",
       "privileged_actions": "CC6.1, CC8.1 (privileged access; change management)",
       "failed_access": "CC6.1, CC7.2 (logical access security; anomalies)",
       "data_changes": "CC7.2, PI1.4 (monitoring; processing integrity)",
       "audit_settings": "CC7.2 (monitoring of the monitoring)",
       "alerts": "CC7.3 (evaluation of security events)",
       "retention": "CC7.2 (logs kept for the audit period)"}'::jsonb),
    ('iso27001', 'ISO/IEC 27001:2022, Annex A', NULL, NULL, false,
     'no fixed period: the organization defines it (A.8.15)',
     '{"integrity": "A.8.15 (logging: logs protected against tampering)",
       "access_changes": "A.5.18 (access rights)",
       "privileged_actions": "A.8.2 (privileged access rights)",
       "failed_access": "A.8.5 (secure authentication)",
       "data_changes": "A.8.15 (logging of activities)",
       "audit_settings": "A.8.15 (logging: protection of log facilities)",
       "alerts": "A.8.16 (monitoring activities)",
       "retention": "A.8.15 (retention defined by the organization)"}'::jsonb),
    ('hipaa', 'HIPAA Security Rule (45 CFR Part 164, Subpart C)', interval '6 years', NULL, false,
     'six years (45 CFR 164.316(b)(2)(i), the retention of required documentation)',
     '{"integrity": "164.312(c)(1) (integrity)",
       "access_changes": "164.308(a)(4) (information access management)",
       "privileged_actions": "164.312(b) (audit controls)",
       "failed_access": "164.308(a)(5)(ii)(C) (log-in monitoring)",
       "data_changes": "164.312(b), 164.312(c)(1) (audit controls; integrity)",
       "audit_settings": "164.312(b) (audit controls)",
       "alerts": "164.308(a)(1)(ii)(D) (information system activity review)",
       "retention": "164.316(b)(2)(i) (six years)"}'::jsonb),
    ('pci_dss', 'PCI DSS v4.0, Requirement 10', interval '1 year', interval '3 months', false,
     'at least twelve months, the last three immediately available (10.5.1)',
     '{"integrity": "10.3.2, 10.3.4 (audit logs protected from modification)",
       "access_changes": "10.2.1.5 (changes to identification and authentication credentials and privileges)",
       "privileged_actions": "10.2.1.2 (actions by individuals with administrative access)",
       "failed_access": "10.2.1.4 (invalid logical access attempts)",
       "data_changes": "10.2.1.1 (individual access to cardholder data)",
       "audit_settings": "10.2.1.6 (initialization, stopping or pausing of audit logs)",
       "alerts": "10.4.1, 10.7 (log review; failures of security controls)",
       "retention": "10.5.1 (twelve months, three at hand)"}'::jsonb),
    ('gdpr', 'GDPR (Regulation (EU) 2016/679)', NULL, NULL, true,
     'no minimum; the storage limitation principle (Art. 5(1)(e)) asks that personal data, which audit events hold, is kept no longer than needed',
     '{"integrity": "Art. 5(1)(f), Art. 32(1)(b) (integrity and confidentiality)",
       "access_changes": "Art. 32(1)(b) (confidentiality of processing systems)",
       "privileged_actions": "Art. 32 (security of processing)",
       "failed_access": "Art. 33 (detection of personal data breaches)",
       "data_changes": "Art. 5(2), Art. 30 (accountability; records of processing)",
       "audit_settings": "Art. 5(2) (accountability)",
       "alerts": "Art. 33 (breach detection and notification)",
       "retention": "Art. 5(1)(e) (storage limitation)"}'::jsonb)
$$;

-- audit.report(framework, since, until): the report as one jsonb document (framework, period,
-- generated_at, integrity, sections); since NULL is the start of the log, until NULL now.
-- Recorded as an audit.report event, or, where nothing can be written (a hot standby, a
-- read-only transaction), mirrored to the server log. DateStyle, IntervalStyle and TimeZone are
-- fixed, so that the period's bounds written into each section's query read back the same in
-- any session that reruns it, whatever the caller's settings.
--
-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.report(framework text, since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL)
RETURNS jsonb
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres'
    SET TimeZone = 'UTC'
AS $$
DECLARE
    fw record;
    s record;
    lo timestamptz := coalesce(since, '-infinity');
    hi timestamptz := coalesce(until, now());
    period text;
    q text;
    n bigint;
    findings jsonb;
    sections jsonb := '[]';
    integrity jsonb;
    first_id bigint;
    last_id bigint;
    line text;
    cp record;
    keep_findings jsonb;
    result jsonb;
BEGIN
    SELECT * INTO fw FROM audit_internal._report_frameworks() f WHERE f.framework = report.framework;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('audit.report(): unknown framework %L', framework),
            HINT = 'Use soc2, iso27001, hipaa, pci_dss or gdpr.';
    END IF;
    IF lo > hi THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('audit.report(): since (%s) is after until (%s)', lo, hi),
            HINT = 'Give the start of the period first, e.g. audit.report(''soc2'', now() - interval ''90 days'', now()).';
    END IF;
    period := format('e.at >= %L AND e.at < %L', lo, hi);

    -- integrity: verify over the events of the period, and the latest checkpoint
    SELECT min(e.id), max(e.id) INTO first_id, last_id FROM audit.events e WHERE e.at >= lo AND e.at < hi;
    IF first_id IS NULL THEN
        integrity := jsonb_build_object('ok', true, 'chains', 0, 'events_checked', 0, 'problems', '[]'::jsonb,
                                        'query', NULL, 'note', 'no events in the period');
    ELSE
        SELECT jsonb_build_object(
                   'ok', coalesce(bool_and(v.ok), true),
                   'chains', count(*) FILTER (WHERE v.chain IS NOT NULL),
                   'events_checked', coalesce(sum(v.events_checked), 0),
                   'problems', coalesce(jsonb_agg(jsonb_build_object('chain', v.chain, 'first_bad_id', v.first_bad_id,
                                                                     'first_bad_seq', v.first_bad_seq, 'reason', v.reason)
                                                  ORDER BY v.chain NULLS FIRST) FILTER (WHERE NOT v.ok), '[]'),
                   'query', format('SELECT * FROM audit.verify(from_id => %s, to_id => %s)', first_id, last_id))
        INTO integrity
        FROM audit_internal._verify_range(first_id, last_id) v;
    END IF;
    SELECT e.at, e.object_id AS public_key INTO cp FROM audit.events e
    WHERE e.action = 'audit.checkpoint' AND e.module = 'audit' AND e.at < hi ORDER BY e.id DESC LIMIT 1;
    integrity := integrity || jsonb_build_object('control', fw.controls ->> 'integrity',
        'latest_checkpoint', CASE WHEN cp.at IS NULL THEN NULL
                                  ELSE jsonb_build_object('at', cp.at, 'public_key', cp.public_key) END);

    FOR s IN SELECT x.id, x.title, regexp_replace(x.predicate, '\s+', ' ', 'g') AS predicate
             FROM audit_internal._report_sections() x LOOP
        q := format('SELECT e.* FROM audit.events e WHERE %s AND %s ORDER BY e.id', s.predicate, period);
        EXECUTE format('SELECT count(*) FROM audit.events e WHERE %s AND %s', s.predicate, period) INTO n;
        -- findings: who did it, and how often (the ten most frequent actors); for tracked tables,
        -- which tables changed, flagging those with masked columns (regulated data such as card
        -- numbers or health records: masking is what they were tracked with)
        IF s.id = 'data_changes' THEN
            EXECUTE format(
                'SELECT coalesce(jsonb_agg(jsonb_build_object(''table'', x.object_name, ''events'', x.n, ''regulated'', x.regulated)
                                           ORDER BY x.n DESC, x.object_name), ''[]'')
                 FROM (SELECT e.object_name, count(*) AS n,
                              EXISTS (SELECT FROM audit.tracked_tables t WHERE t.table_name = e.object_name
                                      AND cardinality(t.mask_columns) > 0) AS regulated
                       FROM audit.events e WHERE %s AND %s GROUP BY e.object_name) x', s.predicate, period)
            INTO findings;
        ELSE
            EXECUTE format(
                'SELECT coalesce(jsonb_agg(jsonb_build_object(''actor'', x.actor, ''events'', x.n) ORDER BY x.n DESC, x.actor), ''[]'')
                 FROM (SELECT e.actor, count(*) AS n FROM audit.events e WHERE %s AND %s
                       GROUP BY e.actor ORDER BY count(*) DESC, e.actor LIMIT 10) x', s.predicate, period)
            INTO findings;
        END IF;
        sections := sections || jsonb_build_array(jsonb_build_object(
            'id', s.id, 'title', s.title, 'control', fw.controls ->> s.id, 'query', q, 'count', n,
            'findings', findings));
    END LOOP;

    -- retention: every policy against the framework's minimum
    SELECT coalesce(jsonb_agg(f ORDER BY f), '[]') INTO keep_findings FROM (
        SELECT format('policy %s keeps events %s, less than the %s %s asks for', r.pattern, r.keep, fw.min_keep, fw.framework) AS f
        FROM audit.retention r WHERE fw.min_keep IS NOT NULL AND r.keep IS NOT NULL AND r.keep < fw.min_keep
        UNION ALL
        SELECT format('policy %s keeps events forever: %s', r.pattern, fw.retention_rule)
        FROM audit.retention r WHERE fw.forever_is_finding AND r.keep IS NULL
        UNION ALL
        SELECT format('policy %s keeps events %s, less than the %s at hand %s asks for', r.pattern, r.keep, fw.min_at_hand,
                      fw.framework)
        FROM audit.retention r WHERE fw.min_at_hand IS NOT NULL AND r.keep IS NOT NULL AND r.keep < fw.min_at_hand) x;
    sections := sections || jsonb_build_array(jsonb_build_object(
        'id', 'retention', 'title', 'Retention against the framework''s minimum', 'control', fw.controls ->> 'retention',
        'query', 'SELECT * FROM audit.retention_policies', 'count', (SELECT count(*) FROM audit.retention),
        'rule', fw.retention_rule, 'minimum', fw.min_keep, 'at_hand', fw.min_at_hand,
        'policies', (SELECT coalesce(jsonb_agg(jsonb_build_object('pattern', p.action_pattern, 'kept_for', p.kept_for)
                                               ORDER BY p.action_pattern), '[]') FROM audit.retention_policies p),
        'findings', keep_findings));

    result := jsonb_build_object(
        'framework', fw.framework, 'title', fw.title,
        'period', jsonb_build_object('since', since, 'until', hi),
        'generated_at', clock_timestamp(), 'generated_by', session_user,
        'integrity', integrity, 'sections', sections);

    line := format('AUDIT: audit.report framework=%s since=%s until=%s by=%s', fw.framework, since, hi, session_user);
    IF pg_catalog.pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on' THEN
        RAISE LOG '% (not recorded: %)', line,
            CASE WHEN pg_catalog.pg_is_in_recovery() THEN 'hot standby' ELSE 'read-only transaction' END;
    ELSE
        -- as for every read (sql/reads.sql): a report of a damaged log is still made, its event
        -- then a server-log line; an event that rolls back leaves its line too
        BEGIN
            PERFORM audit_internal._event('audit.report', 'audit', 'report', fw.framework, fw.title, NULL,
                                 jsonb_build_object('framework', fw.framework, 'since', since, 'until', hi,
                                                    'integrity_ok', integrity -> 'ok',
                                                    'counts', (SELECT jsonb_object_agg(x ->> 'id', x -> 'count')
                                                               FROM jsonb_array_elements(sections) x)));
            PERFORM audit_internal._read_unless_committed(line);
        EXCEPTION WHEN OTHERS THEN
            RAISE LOG '% (not recorded: %)', line, SQLERRM;
            RAISE WARNING 'audit_ext: this report could not be recorded: %', SQLERRM
                USING HINT = 'It is in the server log instead. Run audit.verify() if the log may be damaged.';
        END;
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION audit.report IS 'A compliance report (soc2, iso27001, hipaa, pci_dss, gdpr) for a period, as jsonb; recorded.';

-- `s` with the characters HTML gives meaning escaped (&, <, >, ", '): every value of the log
-- reaches the page through it.
CREATE FUNCTION audit_internal._html(s text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT replace(replace(replace(replace(replace(coalesce(s, ''), '&', '&amp;'), '<', '&lt;'), '>', '&gt;'),
                           '"', '&quot;'), '''', '&#39;')
$$;

-- audit.report_html(framework, since, until): the report of audit.report() as one standalone
-- HTML page (no external assets, printable to PDF from a browser), with the events of the
-- period per day (per week past 92 days, per month past two years) and status as an inline
-- SVG chart. Recorded as audit.report() records it.
--
-- Elevated entry point (SECURITY DEFINER): it follows the rule of src/pg/elevate.rs, no code a caller
-- controls runs with its rights (path pinned, names qualified, values as parameters, no temp objects).
CREATE FUNCTION audit.report_html(framework text, since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL)
RETURNS text
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres'
    SET TimeZone = 'UTC'
AS $$
DECLARE
    r jsonb := audit.report(framework, since, until);
    lo timestamptz;
    hi timestamptz := (r -> 'period' ->> 'until')::timestamptz;
    bucket text;
    svg text;
    body text := '';
    sec jsonb;
    f jsonb;
    rows text;
    nb int;
    top bigint;
    w int;
    statuses text[] := ARRAY['success', 'failure', 'denied'];
    colors text[] := ARRAY['#4c9a5f', '#d9822b', '#c23b3b'];
BEGIN
    SELECT coalesce(since, min(e.at), hi) INTO lo FROM audit.events e WHERE e.at < hi;
    bucket := CASE WHEN hi - lo <= interval '92 days' THEN 'day' WHEN hi - lo <= interval '730 days' THEN 'week'
                   ELSE 'month' END;
    -- the chart: one column per bucket, stacked by status
    WITH b AS (
        SELECT date_trunc(bucket, e.at AT TIME ZONE 'UTC') AS t, e.status, count(*) AS n
        FROM audit.events e WHERE e.at >= lo AND e.at < hi GROUP BY 1, 2),
    cols AS (SELECT t, row_number() OVER (ORDER BY t) - 1 AS i, sum(n) AS total FROM b GROUP BY t)
    SELECT count(*), coalesce(max(total), 0) INTO nb, top FROM cols;
    w := greatest(nb * 24 + 60, 340);  -- (room for the legend)
    WITH b AS (
        SELECT date_trunc(bucket, e.at AT TIME ZONE 'UTC') AS t, e.status, count(*) AS n
        FROM audit.events e WHERE e.at >= lo AND e.at < hi GROUP BY 1, 2),
    cols AS (SELECT t, row_number() OVER (ORDER BY t) - 1 AS i FROM (SELECT DISTINCT t FROM b) d),
    stacked AS (
        SELECT b.t, c.i, b.status, b.n,
               sum(b.n) OVER (PARTITION BY b.t ORDER BY array_position(statuses, b.status) NULLS LAST, b.status) - b.n AS below
        FROM b JOIN cols c USING (t))
    SELECT string_agg(format(
               '<rect class="bar" data-status="%s" x="%s" y="%s" width="18" height="%s" fill="%s"><title>%s %s: %s</title></rect>',
               audit_internal._html(s.status), 50 + s.i * 24,
               200 - round(180.0 * (s.below + s.n) / greatest(top, 1)), greatest(round(180.0 * s.n / greatest(top, 1)), 1),
               coalesce(colors[array_position(statuses, s.status)], '#777777'),
               to_char(s.t, CASE bucket WHEN 'month' THEN 'YYYY-MM' ELSE 'YYYY-MM-DD' END), audit_internal._html(s.status), s.n),
               '' ORDER BY s.i, s.status)
           || coalesce((SELECT string_agg(format('<text x="%s" y="215" font-size="9" transform="rotate(45 %s 215)">%s</text>',
                                                 50 + c.i * 24, 50 + c.i * 24,
                                                 to_char(c.t, CASE bucket WHEN 'month' THEN 'YYYY-MM' ELSE 'MM-DD' END)),
                                          '' ORDER BY c.i) FROM cols c), '')
    INTO svg FROM stacked s;
    svg := format('<svg id="events-per-%s" xmlns="http://www.w3.org/2000/svg" width="%s" height="250" role="img" '
                  'aria-label="events per %s and status"><line x1="45" y1="200" x2="%s" y2="200" stroke="#333"/>'
                  '<text x="0" y="25" font-size="10">%s</text><text x="0" y="200" font-size="10">0</text>%s'
                  '<g font-size="10">%s</g></svg>',
                  bucket, w, bucket, w, top, coalesce(svg, ''),
                  (SELECT string_agg(format('<rect x="%s" y="235" width="10" height="10" fill="%s"/><text x="%s" y="244">%s</text>',
                                            50 + (k - 1) * 90, colors[k], 64 + (k - 1) * 90, statuses[k]), '')
                   FROM generate_subscripts(statuses, 1) k));

    FOR sec IN SELECT x FROM jsonb_array_elements(r -> 'sections') x LOOP
        rows := '';
        FOR f IN SELECT x FROM jsonb_array_elements(coalesce(sec -> 'findings', '[]')) x LOOP
            rows := rows || '<li>' || audit_internal._html(CASE jsonb_typeof(f)
                WHEN 'string' THEN f #>> '{}'
                WHEN 'object' THEN (SELECT string_agg(k || ': ' || (f ->> k), ', ' ORDER BY k) FROM jsonb_object_keys(f) k)
                ELSE f::text END) || '</li>';
        END LOOP;
        body := body || format(
            '<section id="section-%s"><h3>%s</h3><p class="control">Control: %s</p><p class="count">%s event(s)</p>'
            '%s<details><summary>Query</summary><pre>%s</pre></details></section>',
            audit_internal._html(sec ->> 'id'), audit_internal._html(sec ->> 'title'), audit_internal._html(sec ->> 'control'), sec ->> 'count',
            CASE WHEN rows = '' THEN '<p class="findings">No findings.</p>' ELSE '<ul class="findings">' || rows || '</ul>' END,
            audit_internal._html(sec ->> 'query'));
    END LOOP;

    RETURN format(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>%s: audit report</title>'
        '<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}h1{font-size:1.5em}'
        '.ok{color:#2a7a3a}.bad{color:#b22}pre{white-space:pre-wrap;background:#f4f4f4;padding:.5em}'
        'section{border-top:1px solid #ccc;margin-top:1em}@media print{details{display:block}}</style></head><body>'
        '<h1>%s</h1><p>Period: %s to %s (UTC). Generated %s by %s with audit_ext.</p>'
        '<h2>Integrity</h2><p id="integrity" class="%s">%s: %s chain(s), %s event(s) checked. Control: %s</p>%s'
        '<h2>Events per %s</h2>%s<h2>Sections</h2>%s</body></html>',
        audit_internal._html(r ->> 'title'), audit_internal._html(r ->> 'title'),
        coalesce(to_char(lo AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), 'the start'), to_char(hi AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'),
        to_char((r ->> 'generated_at')::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), audit_internal._html(r ->> 'generated_by'),
        CASE WHEN (r -> 'integrity' ->> 'ok')::boolean THEN 'ok' ELSE 'bad' END,
        CASE WHEN (r -> 'integrity' ->> 'ok')::boolean THEN 'Intact' ELSE 'NOT INTACT' END,
        r -> 'integrity' ->> 'chains', r -> 'integrity' ->> 'events_checked', audit_internal._html(r -> 'integrity' ->> 'control'),
        coalesce((SELECT '<ul class="problems">' || string_agg('<li>' || audit_internal._html(coalesce('chain ' || (p ->> 'chain'), 'guards')
                                                                  || ': ' || coalesce(p ->> 'reason', '')) || '</li>', '') || '</ul>'
                  FROM jsonb_array_elements(r -> 'integrity' -> 'problems') p), ''),
        bucket, svg, body);
END
$$;
COMMENT ON FUNCTION audit.report_html IS 'audit.report() as one standalone HTML page with an inline SVG chart; recorded.';
