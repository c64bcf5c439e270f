#!/usr/bin/env bash
# Alerts and search benchmark (issue 5, section 4; see BENCHMARKS.md). Run by `make bench`
# after bench/run.sh, or alone with `make bench-alerts`; needs the bench cluster up.
#
# 1. audit.record TPS (bench/pgbench_record.sql, 4 clients, default chains) with 0, 10 and 100
#    enabled alert rules and with one unfiltered stream, as ratios to the 0-rule run of the
#    same script in the same run. The rules are realistic ones that do not match the benchmark
#    event (each event is still matched against all of them in memory); what a match costs is
#    reported separately: one rule that matches every event, threshold never reached.
# 2. audit.search latency on BENCH_SEARCH_EVENTS (1,000,000) events for four questions, each as
#    a ratio to the hand-written SQL that uses the same indexes (median of BENCH_REPEAT x 5).
# Prints a markdown table and writes it to bench/results/alerts.md (raw: alerts.log).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # from the checkout root, PostgreSQL 15 tools first
N=${BENCH_SEARCH_EVENTS:-1000000}
bench_start alerts audit_bench_alerts

# ---- 1. record TPS with rules ----------------------------------------------------------
# rules K: K rules of ten shapes that the benchmark event (bench.event, status success,
# object_type order) never matches.
set_rules() {
  sql "$DB" -c "SELECT audit.drop_alert(name) FROM audit.alert_rules" \
            -c "SELECT audit.unstream(channel) FROM audit.streams" >/dev/null
  [ "$1" -gt 0 ] || return 0
  sql "$DB" -c "SELECT audit.create_alert('rule-' || i, q, threshold => 5, group_by => 'actor')
    FROM generate_series(1, $1) i,
    LATERAL (SELECT (ARRAY[
      'action:authentication.login AND status:failure',
      'severity:critical',
      'action:policy.* AND status:denied',
      'actor_ip:203.0.113.0/24 AND NOT status:success',
      'metadata.tags:breach',
      'object_type:vm AND action:VM_POWER_OFF',
      'status:denied OR status:failure',
      'new.role:admin AND action:permission.grant',
      'message:*password* AND at:>now-1h',
      'module:ddl AND action:ddl.drop_*'])[1 + (i - 1) % 10] AS q) s" >/dev/null
}
variants=(0 10 100 stream match)
setup_variant() {
  case $1 in
    stream) set_rules 0; sql "$DB" -c "SELECT audit.stream('audit_bench')" >/dev/null ;;
    match) set_rules 0; sql "$DB" -c "SELECT audit.create_alert('every', 'action:bench.event', threshold => 1000000000, \"window\" => '1 second')" >/dev/null ;;
    *) set_rules "$1" ;;
  esac
}
declare -A TPS=()
for ((r = 1; r <= ROUNDS; r++)); do
  for v in "${variants[@]}"; do
    setup_variant "$v"
    [ "$r" = 1 ] && run_pgbench "$DB" bench/pgbench_record.sql 4 "$WARMUP" >/dev/null
    log "record with rules=$v, round $r/$ROUNDS, ${SECS}s"
    TPS[$v]="${TPS[$v]:-} $(run_pgbench "$DB" bench/pgbench_record.sql 4 "$SECS")"
  done
done
set_rules 0

# ---- 2. search latency --------------------------------------------------------------------
log "search: writing $N events"
left=$N
while ((left > 0)); do
  b=$((left < 100000 ? left : 100000)); left=$((left - b))
  sql "$DB" -c "INSERT INTO audit.events (at, actor, actor_ip, action, status, object_type, object_id, message, metadata)
    SELECT now() - random() * interval '30 days', 'user' || (i % 1000) || '@example.com',
           ('10.' || (i / 4 % 4) || '.' || (i % 250) || '.' || (i % 200))::inet,
           (ARRAY['authentication.login', 'resource.modify', 'policy.update', 'vm.start'])[1 + i % 4],
           CASE WHEN i % 7 = 0 THEN 'failure' ELSE 'success' END, 'vm', 'vm-' || (i % 5000),
           CASE WHEN i % 1000 = 0 THEN 'quota exceeded on node ' || i ELSE 'ok ' || i END,
           jsonb_build_object('request_id', 'r' || i, 'tags', CASE WHEN i % 100 = 0 THEN '[\"budget\"]'::jsonb ELSE '[\"ops\"]'::jsonb END)
    FROM generate_series(1, $b) i" >/dev/null
done
sql "$DB" -c "VACUUM ANALYZE audit.events" >/dev/null
# question | query language | the hand-written SQL a DBA would write, same shape and limit
QUESTIONS=(
  "an actor in the last 24 h|actor:user42@example.com AND at:>now-24h|SELECT * FROM audit.events WHERE actor = 'user42@example.com' AND at > now() - interval '24 hours' ORDER BY id DESC LIMIT 100"
  "failed logins from an IP prefix|action:authentication.login AND status:failure AND actor_ip:10.1.*|SELECT * FROM audit.events WHERE action = 'authentication.login' AND status = 'failure' AND actor_ip <<= '10.1.0.0/16' ORDER BY id DESC LIMIT 100"
  "a metadata tag|metadata.tags:budget|SELECT * FROM audit.events WHERE metadata @> '{\"tags\": \"budget\"}' OR metadata @> '{\"tags\": [\"budget\"]}' ORDER BY id DESC LIMIT 100"
  "a free-text word|quota|SELECT * FROM audit.events WHERE action ILIKE '%quota%' OR actor ILIKE '%quota%' OR object_type ILIKE '%quota%' OR object_id ILIKE '%quota%' OR object_name ILIKE '%quota%' OR message ILIKE '%quota%' OR module ILIKE '%quota%' OR application ILIKE '%quota%' ORDER BY id DESC LIMIT 100"
)
# time_series SQL COUNT: median ms of COUNT runs in one session (psql \timing), after one
# unreported warm-up run (plans, caches, the library and PL/pgSQL loaded). The rows go to the
# client (and on to /dev/null) as an application would fetch them: all columns of each.
time_series() {
  local args=(-c '\timing on' -c '\o /dev/null') i
  for ((i = 0; i <= $2; i++)); do args+=(-c "$1"); done
  median $(sql "$DB" "${args[@]}" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n +2)
}
declare -A SEARCH=() HAND=() ROWS=()
for q in "${QUESTIONS[@]}"; do
  IFS='|' read -r what lang hand <<<"$q"
  log "search: $what"
  s_sql="SELECT * FROM audit.search('$lang', 100)"
  a=$(sql "$DB" -c "SELECT count(*) FROM ($s_sql) s"); b=$(sql "$DB" -c "SELECT count(*) FROM ($hand) s")
  [ "$a" = "$b" ] || die "search and hand-written SQL disagree for '$lang': $a vs $b rows"
  ROWS[$what]=$a
  SEARCH[$what]=$(time_series "$s_sql" $((5 * REPEAT)))
  HAND[$what]=$(time_series "$hand" $((5 * REPEAT)))
done

# ---- report -----------------------------------------------------------------------------
# shellcheck disable=SC2086
{
  base=$(mean ${TPS[0]})
  echo "## Alerts, streams and search"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, PostgreSQL $(sql "$DB" -c 'SHOW server_version'),"
  echo "git $(git rev-parse --short HEAD 2>/dev/null || echo unknown). Run took $(($(date +%s) - T0))s."
  echo
  echo "audit.record TPS (bench/pgbench_record.sql, 4 clients, mean of $ROUNDS x ${SECS}s), as a ratio to the run without rules:"
  echo
  echo "| variant | TPS | ratio to 0 rules | goal |"
  echo "|---|--:|--:|---|"
  echo "| 0 rules | $(int "$base") | 1.00x | |"
  for v in 10 100; do
    t=$(mean ${TPS[$v]})
    goal=""; [ "$v" = 10 ] && goal="10 rules cost at most 15% (>= 0.85x): $(met "$t / $base >= 0.85")"
    echo "| $v enabled rules, none matching | $(int "$t") | $(calc "%.2f" "$t / $base")x | $goal |"
  done
  t=$(mean ${TPS[stream]}); echo "| one stream of every event (NOTIFY per event) | $(int "$t") | $(calc "%.2f" "$t / $base")x | |"
  t=$(mean ${TPS[match]}); echo "| one rule matching every event (a count per event, never firing) | $(int "$t") | $(calc "%.2f" "$t / $base")x | |"
  echo
  echo "audit.search on $(int "$N") events vs the hand-written SQL over the same indexes (median of $((5 * REPEAT)) runs in one session, rows fetched by psql, ms):"
  echo
  echo "| question | query | rows | audit.search | hand-written SQL | ratio | goal (<= 1.2x) |"
  echo "|---|---|--:|--:|--:|--:|---|"
  for q in "${QUESTIONS[@]}"; do
    IFS='|' read -r what lang hand <<<"$q"
    s=${SEARCH[$what]}; h=${HAND[$what]}
    echo "| $what | \`$lang\` | ${ROWS[$what]} | $(calc "%.2f" "$s") | $(calc "%.2f" "$h") | $(calc "%.2f" "$s / $h")x | $(met "$s / $h <= 1.2") |"
  done
} | tee "$OUT/alerts.md"
