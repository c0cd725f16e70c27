-- Periodic jobs: the registry, settings, runs recorded in job_runs with
-- their outcome, and what cannot be done (pg_cron itself is exercised by
-- test/integration/benefits_cron.sh, concurrency by benefits_swap.sh).

-- Every subsystem registers its jobs at install.
SELECT job, schedule, command, enabled FROM membership.job_definitions() ORDER BY job;

-- Registering again changes the defaults; bad registrations are refused.
SELECT membership.register_job('regress_ok', '*/5 * * * *', 'SELECT 42::bigint', 'a job that succeeds');
SELECT membership.register_job('regress_rows', '@daily', 'SELECT generate_series(1, 3)', 'rows of its last statement');
SELECT membership.register_job('regress_fails', '0 4 * * 1', 'SELECT 1/0', 'a job that fails');
SELECT membership.register_job('regress_ok', '*/10 * * * *', 'SELECT 42::bigint', 'a job that succeeds, less often');
SELECT schedule, description FROM membership.jobs WHERE name = 'regress_ok';
SELECT fixture.try($$SELECT membership.register_job('Bad Name', '* * * * *', 'SELECT 1', 'x')$$);
SELECT fixture.try($$SELECT membership.register_job('bad_schedule', 'every day', 'SELECT 1', 'x')$$);
SELECT fixture.try($$SELECT membership.register_job('bad_schedule', '* * * *', 'SELECT 1', 'x')$$);
SELECT fixture.try($$SELECT membership.register_job('no_command', '* * * * *', NULL, 'x')$$);
SELECT fixture.try($$SELECT membership.register_job('blank', '* * * * *', '  ', 'x')$$);

-- The platform changes a schedule or switches a job off, and back.
SELECT membership.configure_job('regress_fails', enabled => false);
SELECT membership.configure_job('regress_ok', schedule => '15 3 * * *');
SELECT job, schedule, enabled FROM membership.job_definitions() WHERE job LIKE 'regress%' ORDER BY job;
SELECT membership.configure_job('regress_ok', schedule => 'default');
SELECT membership.configure_job('regress_fails', enabled => true);
SELECT job, schedule, enabled FROM membership.job_definitions() WHERE job LIKE 'regress%' ORDER BY job;
SELECT fixture.try($$SELECT membership.configure_job('no_such_job', enabled => false)$$);
SELECT fixture.try($$SELECT membership.configure_job('regress_ok', schedule => 'sometimes')$$);
SELECT fixture.try($$SELECT membership.configure_job(NULL)$$);

-- Runs: a success records its rows (the value a job function returns, or
-- the rows of its last statement), a failure its error, which run_job
-- raises again so that pg_cron sees it too.
CALL membership.run_job('regress_ok');
CALL membership.run_job('regress_rows');
CALL membership.run_job('regress_fails');
SELECT id, job, status, rows, error, finished_at >= started_at AS ended, pid = pg_backend_pid() AS by_me,
       run_by
FROM membership.job_runs ORDER BY id;

-- The failed job's work was rolled back, its record was kept.
SELECT membership.register_job('regress_partial', '* * * * *',
    $$INSERT INTO fixture.keys VALUES ('written by a job', 'x'); SELECT 1/0$$, 'fails after writing');
CALL membership.run_job('regress_partial');
SELECT count(*) AS left_behind FROM fixture.keys WHERE name = 'written by a job';
SELECT status, error FROM membership.job_runs WHERE job = 'regress_partial';

-- A job runs by a CALL of its own: not inside a transaction block, not
-- unregistered, not NULL.
BEGIN;
CALL membership.run_job('regress_ok');
ROLLBACK;
CALL membership.run_job('no_such_job');
CALL membership.run_job(NULL);
SELECT count(*) AS runs FROM membership.job_runs;

-- The status of every job, with its last run.
SELECT job, schedule, enabled, last_status, last_rows, last_error, phase
FROM membership.job_status() WHERE job LIKE 'regress%' ORDER BY job;

-- Progress reported outside a job run goes nowhere; bad progress is refused.
SELECT membership.report_job_progress(1, 10, 'outside');
SELECT fixture.try($$SELECT membership.report_job_progress(11, 10)$$);
SELECT fixture.try($$SELECT membership.report_job_progress(-1)$$);
SELECT fixture.try($$SELECT membership.report_job_progress(NULL)$$);
SELECT fixture.try($$SELECT membership.report_job_progress(1, 2, repeat('x', 64))$$);
SELECT count(*) AS running FROM membership.job_progress();

-- Scheduling needs pg_cron in this database, which this one lacks.
SELECT fixture.try($$SELECT * FROM membership.schedule_jobs()$$);
SELECT fixture.try($$SELECT membership.unschedule_jobs()$$);

-- Who may do what: platform administrators run and configure jobs, the
-- worker role runs them; clients may not.
SELECT r.role, has_function_privilege(r.role, 'membership.configure_job(text, text, boolean)', 'EXECUTE') AS configure,
       has_function_privilege(r.role, 'membership.run_job(text)', 'EXECUTE') AS run,
       has_function_privilege(r.role, 'membership.job_status()', 'EXECUTE') AS status,
       has_function_privilege(r.role, 'membership.register_job(text, text, text, text)', 'EXECUTE') AS register
FROM unnest(ARRAY['membership_platform_admin', 'membership_worker', 'membership_org_admin',
                  'membership_member', 'membership_provider']) AS r(role);

DELETE FROM membership.jobs WHERE name LIKE 'regress%';
DELETE FROM membership.job_runs WHERE job LIKE 'regress%' OR job = 'no_such_job';
