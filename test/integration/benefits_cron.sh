#!/usr/bin/env bash
# Every periodic job registered with pg_cron (preloaded in this cluster,
# cron.database_name = 'membership'), idempotently, for the right database
# and role; the registered commands run as pg_cron runs them and are
# recorded in job_runs, successes and failures; and everything is taken
# back by unschedule_jobs().
. "$(dirname "$0")/tap.bash"
plan 16

db=membership
created_cron=$(q -d $db -c "SELECT NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron')")
q -d $db -c "CREATE EXTENSION IF NOT EXISTS pg_cron" >/dev/null
psql -X -q -d $db >/dev/null <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'membership_cron_test') THEN
        CREATE ROLE membership_cron_test LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'membership_cron_nobody') THEN
        CREATE ROLE membership_cron_nobody LOGIN;
    END IF;
END
$$;
GRANT membership_worker TO membership_cron_test;
SQL

# Our jobs in pg_cron: "name|schedule|command|database|username|active".
ours() {
	q -d $db -c "SELECT string_agg(concat_ws('|', jobname, schedule, command, database, username, active), ' '
	                               ORDER BY jobname)
	             FROM cron.job WHERE starts_with(jobname, 'membership.')"
}
registered=$(q -d $db -c "SELECT count(*) FROM membership.job_definitions()")

actions=$(q -d $db -c "SELECT string_agg(DISTINCT action, ',') || ' ' || count(*)
                       FROM membership.schedule_jobs('membership_cron_test')")
is "$actions" "scheduled $registered" "schedule_jobs() gives pg_cron every registered job"
like "$(ours)" "membership.score_feeds\|0 2 \* \* \*\|CALL membership.run_job\('score_feeds'\)\|membership\|membership_cron_test\|t" \
	"... scoring at 02:00, as CALL membership.run_job() in this database, as the role asked for"
first=$(ours)
is "$(q -d $db -c "SELECT string_agg(DISTINCT action, ',') FROM membership.schedule_jobs('membership_cron_test')")" \
	"unchanged" "a second call changes nothing"
is "$(ours)" "$first" "... pg_cron's table is as it was"

q -d $db -c "SELECT membership.configure_job('score_feeds', schedule => '30 1 * * *')" >/dev/null
is "$(q -d $db -c "SELECT action || ' ' || schedule FROM membership.schedule_jobs('membership_cron_test') WHERE job = 'score_feeds'")" \
	"updated 30 1 * * *" "a changed schedule updates the pg_cron job"
q -d $db -c "SELECT membership.configure_job('score_feeds', enabled => false)" >/dev/null
is "$(q -d $db -c "SELECT action FROM membership.schedule_jobs('membership_cron_test') WHERE job = 'score_feeds'")" \
	"unscheduled" "a disabled job is taken back"
is "$(q -d $db -c "SELECT count(*) FROM cron.job WHERE jobname = 'membership.score_feeds'")" "0" "... and is gone from pg_cron"
q -d $db -c "SELECT membership.configure_job('score_feeds', schedule => 'default', enabled => true)" >/dev/null
q -d $db -c "SELECT count(*) FROM membership.schedule_jobs('membership_cron_test')" >/dev/null

like "$(q -d $db -c "SELECT * FROM membership.schedule_jobs('membership_cron_nobody')" 2>&1)" \
	'role "membership_cron_nobody" cannot run the jobs' "a role that is not a worker cannot be given the jobs"
like "$(q -d $db -c "SELECT * FROM membership.schedule_jobs('membership_worker')" 2>&1)" \
	'role "membership_worker" cannot log in' "... nor one that cannot log in"
is "$(ours)" "$first" "... and refused calls change nothing"

# Each registered command, run the way pg_cron runs it: as the job's role,
# in the job's database, on a connection of its own.
ok=0
while IFS='|' read -r command database username; do
	psql -X -q -d "$database" -U "$username" -c "$command" >/dev/null 2>&1 && ok=$((ok + 1))
done < <(q -d $db -F '|' -c "SELECT command, database, username FROM cron.job
                             WHERE starts_with(jobname, 'membership.') ORDER BY jobname")
is "$ok" "$registered" "every scheduled command runs as the cron role"
is "$(q -d $db -c "SELECT string_agg(DISTINCT status || ' ' || run_by, ',') || ' ' || count(*) FROM membership.job_runs")" \
	"succeeded membership_cron_test $registered" "... and each run is recorded in job_runs as succeeded"

# A failing job: recorded as failed, and the command fails for pg_cron too.
q -d $db -c "SELECT membership.register_job('cron_test_failing', '0 5 * * *', 'SELECT 1/0', 'fails on purpose')" >/dev/null
is "$(q -d $db -c "SELECT action FROM membership.schedule_jobs('membership_cron_test') WHERE job = 'cron_test_failing'")" \
	"scheduled" "a job registered later is scheduled by the next call"
command=$(q -d $db -c "SELECT command FROM cron.job WHERE jobname = 'membership.cron_test_failing'")
if psql -X -q -d $db -U membership_cron_test -c "$command" >/dev/null 2>&1; then
	fail "a failing job's command fails for pg_cron"
else
	pass "a failing job's command fails for pg_cron"
fi
is "$(q -d $db -c "SELECT status || ': ' || error FROM membership.job_runs WHERE job = 'cron_test_failing'")" \
	"failed: division by zero" "... and the run is recorded as failed, with the error"

q -d $db -c "DELETE FROM membership.jobs WHERE name = 'cron_test_failing'" >/dev/null
is "$(q -d $db -c "SELECT membership.unschedule_jobs()")" "$((registered + 1))" \
	"unschedule_jobs() takes every job back, even one no longer registered"

q -d $db -c "DELETE FROM membership.job_runs" >/dev/null
[ "$created_cron" = t ] && q -d $db -c "DROP EXTENSION pg_cron" >/dev/null
psql -X -q -d $db -c "DROP ROLE membership_cron_test" -c "DROP ROLE membership_cron_nobody" >/dev/null
finish
