-- Periodic jobs (src/jobs.c): a registry that every subsystem fills from
-- its own SQL file with membership.register_job(), pg_cron registration of
-- all of them at once, a record of every run, and live progress.
--
--   membership.jobs          the registry, as the install script defines it
--   membership.job_settings  the platform's changes to it (schedule, enabled)
--   membership.job_runs      every run: start, end, rows, status, error
--
-- pg_cron runs each job as "CALL membership.run_job('name')".  run_job()
-- commits a 'running' row before the job starts, so the run is visible at
-- once; its progress is in shared memory (membership.job_progress()).

-- Is this a schedule pg_cron accepts: five cron fields, or a macro?
-- pg_cron checks it again when the job is scheduled.
CREATE FUNCTION membership.is_cron_schedule(schedule text) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT schedule ~ '^\s*@(yearly|annually|monthly|weekly|daily|hourly)\s*$'
        OR schedule ~* '^\s*[0-9a-z*/,-]+(\s+[0-9a-z*/,-]+){4}\s*$'
$$;

CREATE TABLE membership.jobs (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    schedule    text NOT NULL CHECK (membership.is_cron_schedule(schedule)),
    command     text NOT NULL CHECK (pg_catalog.btrim(command) <> ''),
    description text NOT NULL CHECK (pg_catalog.btrim(description) <> '')
);
COMMENT ON TABLE membership.jobs IS
    'platform: the periodic jobs of the extension, as each subsystem registers them at install';
SELECT membership.isolate_table('membership.jobs', NULL);
-- The install script creates these rows, so a dump must not carry them (a
-- restore would insert them twice); changes live in job_settings.
SELECT pg_catalog.pg_extension_config_dump('membership.jobs', 'WHERE false');

CREATE TABLE membership.job_settings (
    job         text PRIMARY KEY REFERENCES membership.jobs (name) ON DELETE CASCADE,
    schedule    text CHECK (membership.is_cron_schedule(schedule)),
    enabled     boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE membership.job_settings IS
    'platform: schedules and switches the platform chose instead of the registered defaults';
SELECT membership.isolate_table('membership.job_settings', NULL);

CREATE TABLE membership.job_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job         text NOT NULL,
    status      text NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted')),
    started_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished_at timestamptz,
    rows        bigint CHECK (rows >= 0),
    error       text,
    pid         integer NOT NULL,
    run_by      name NOT NULL DEFAULT SESSION_USER,
    CHECK ((status = 'running') = (finished_at IS NULL)),
    CHECK ((status IN ('failed', 'interrupted')) = (error IS NOT NULL))
);
CREATE INDEX job_runs_job_idx ON membership.job_runs (job, started_at);
CREATE INDEX job_runs_running_idx ON membership.job_runs (id) WHERE status = 'running';
COMMENT ON TABLE membership.job_runs IS
    'platform: every run of a job, with its outcome (no member data: counts and error messages)';
SELECT membership.isolate_table('membership.job_runs', NULL);

-- Register (or re-register, with new defaults) a periodic job.  Called by
-- the install script of each subsystem; the command is SQL that the job
-- runner executes, ideally "SELECT membership.some_job()" returning how
-- many rows it processed.
CREATE FUNCTION membership.register_job(name text, schedule text, command text, description text)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF name IS NULL OR schedule IS NULL OR command IS NULL OR description IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'job name, schedule, command and description must not be null';
    END IF;
    IF name !~ '^[a-z][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid job name "%s"', name),
            HINT = 'Job names are 1 to 63 lower-case letters, digits and underscores, starting with a letter.';
    END IF;
    IF NOT membership.is_cron_schedule(schedule) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid schedule "%s"', schedule),
            HINT = 'Use five cron fields ("0 2 * * *") or a macro such as "@daily".';
    END IF;
    IF btrim(command) = '' OR btrim(description) = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'job command and description must not be empty';
    END IF;
    INSERT INTO membership.jobs AS j (name, schedule, command, description)
    VALUES (register_job.name, btrim(register_job.schedule), register_job.command, register_job.description)
    ON CONFLICT ON CONSTRAINT jobs_pkey
    DO UPDATE SET schedule = EXCLUDED.schedule, command = EXCLUDED.command,
                  description = EXCLUDED.description;
END
$$;
COMMENT ON FUNCTION membership.register_job(text, text, text, text) IS
    'install-time: add a periodic job to the registry, or change its defaults';

-- Change a job's schedule or switch it off.  NULL leaves a setting as it
-- is; schedule 'default' goes back to the registered one.  Takes effect in
-- pg_cron at the next membership.schedule_jobs().
CREATE FUNCTION membership.configure_job(job text, schedule text DEFAULT NULL, enabled boolean DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF job IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'job must not be null';
    END IF;
    IF NOT EXISTS (SELECT FROM membership.jobs j WHERE j.name = job) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('job "%s" is not registered', job),
            HINT = 'Registered jobs are listed by membership.job_status().';
    END IF;
    IF schedule IS NOT NULL AND schedule <> 'default' AND NOT membership.is_cron_schedule(schedule) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid schedule "%s"', schedule),
            HINT = 'Use five cron fields ("0 2 * * *"), a macro such as "@daily", or "default".';
    END IF;
    INSERT INTO membership.job_settings AS s (job, schedule, enabled)
    VALUES (configure_job.job, nullif(btrim(configure_job.schedule), 'default'),
            coalesce(configure_job.enabled, true))
    ON CONFLICT ON CONSTRAINT job_settings_pkey
    DO UPDATE SET schedule = CASE WHEN configure_job.schedule IS NULL THEN s.schedule
                                  ELSE EXCLUDED.schedule END,
                  enabled = coalesce(configure_job.enabled, s.enabled);
END
$$;
GRANT EXECUTE ON FUNCTION membership.configure_job(text, text, boolean) TO membership_platform_admin;

-- Every registered job with the schedule in force and whether it is on.
CREATE FUNCTION membership.job_definitions()
    RETURNS TABLE (job text, schedule text, command text, description text, enabled boolean)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT j.name, coalesce(s.schedule, j.schedule), j.command, j.description, coalesce(s.enabled, true)
    FROM membership.jobs j LEFT JOIN membership.job_settings s ON s.job = j.name
    ORDER BY j.name
$$;
GRANT EXECUTE ON FUNCTION membership.job_definitions() TO membership_platform_admin, membership_worker;

CREATE FUNCTION membership.job_progress()
    RETURNS TABLE (run_id bigint, job text, pid integer, phase text, done bigint, total bigint,
                   started_at timestamptz, updated_at timestamptz)
    LANGUAGE C VOLATILE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'membership_job_progress';
COMMENT ON FUNCTION membership.job_progress() IS
    'jobs running in this database now, with the progress they last reported (from shared memory)';
GRANT EXECUTE ON FUNCTION membership.job_progress() TO membership_platform_admin, membership_worker;

CREATE FUNCTION membership.report_job_progress(done bigint, total bigint DEFAULT NULL, phase text DEFAULT NULL)
    RETURNS boolean
    LANGUAGE C VOLATILE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'membership_report_job_progress';
COMMENT ON FUNCTION membership.report_job_progress(bigint, bigint, text) IS
    'publish the progress of the job running in this session; false (and nothing) outside a job run';
GRANT EXECUTE ON FUNCTION membership.report_job_progress(bigint, bigint, text) TO membership_worker;

CREATE FUNCTION membership.all_organisations() RETURNS SETOF uuid
    LANGUAGE C STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'membership_all_organisations';
COMMENT ON FUNCTION membership.all_organisations() IS
    'every organisation id, past row-level security, for jobs that act for each in turn (owner role only)';

-- The start of a run: mark runs whose backend is gone as interrupted, drop
-- history older than membership.job_history_days, and record this run as
-- running.  Called by run_job(), which has taken the job's progress slot.
CREATE FUNCTION membership.job_run_start(job text, pid integer)
    RETURNS TABLE (run_id bigint, command text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_command text;
BEGIN
    UPDATE membership.job_runs r
    SET status = 'interrupted', finished_at = clock_timestamp(),
        error = 'the run ended without finishing: its server process exited or the server restarted'
    WHERE r.status = 'running'
      AND NOT EXISTS (SELECT FROM membership.job_progress() p
                      WHERE p.pid = r.pid AND p.job = r.job AND p.started_at <= r.started_at);

    SELECT j.command INTO v_command FROM membership.jobs j WHERE j.name = job_run_start.job;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('job "%s" is not registered', job),
            HINT = 'Registered jobs are listed by membership.job_status().';
    END IF;

    DELETE FROM membership.job_runs r
    WHERE r.job = job_run_start.job AND r.status <> 'running'
      AND r.started_at < now() - make_interval(days => current_setting('membership.job_history_days')::int);

    INSERT INTO membership.job_runs (job, pid) VALUES (job_run_start.job, job_run_start.pid)
    RETURNING id INTO run_id;
    command := v_command;
    RETURN NEXT;
END
$$;
GRANT EXECUTE ON FUNCTION membership.job_run_start(text, integer) TO membership_platform_admin, membership_worker;

CREATE FUNCTION membership.job_run_finish(run_id bigint, succeeded boolean, rows bigint, error text)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    UPDATE membership.job_runs r
    SET status = CASE WHEN succeeded THEN 'succeeded' ELSE 'failed' END,
        finished_at = clock_timestamp(),
        rows = CASE WHEN succeeded THEN greatest(job_run_finish.rows, 0) END,
        error = CASE WHEN NOT succeeded THEN coalesce(job_run_finish.error, 'unknown error') END
    WHERE r.id = run_id AND r.status = 'running';
END
$$;
GRANT EXECUTE ON FUNCTION membership.job_run_finish(bigint, boolean, bigint, text) TO membership_platform_admin, membership_worker;

CREATE PROCEDURE membership.run_job(job text)
    LANGUAGE C
    AS 'MODULE_PATHNAME', 'membership_run_job';
COMMENT ON PROCEDURE membership.run_job(text) IS
    'run a registered job now, recording the run in membership.job_runs (CALL it outside a transaction block)';
GRANT EXECUTE ON PROCEDURE membership.run_job(text) TO membership_platform_admin, membership_worker;

-- Every job: its schedule, its last run, and its progress if it runs now.
CREATE FUNCTION membership.job_status()
    RETURNS TABLE (job text, description text, schedule text, enabled boolean,
                   last_run_id bigint, last_status text, last_started_at timestamptz,
                   last_finished_at timestamptz, last_rows bigint, last_error text,
                   phase text, done bigint, total bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT d.job, d.description, d.schedule, d.enabled,
           r.id,
           CASE WHEN r.status = 'running' AND p.pid IS NULL THEN 'interrupted' ELSE r.status END,
           r.started_at, r.finished_at, r.rows, r.error,
           p.phase, p.done, p.total
    FROM membership.job_definitions() d
    LEFT JOIN LATERAL (SELECT * FROM membership.job_runs x WHERE x.job = d.job
                       ORDER BY x.started_at DESC, x.id DESC LIMIT 1) r ON true
    LEFT JOIN membership.job_progress() p ON p.job = d.job AND p.pid = r.pid AND p.started_at <= r.started_at
    ORDER BY d.job
$$;
GRANT EXECUTE ON FUNCTION membership.job_status() TO membership_platform_admin, membership_worker;

-- The name of a job in pg_cron's table.
CREATE FUNCTION membership.cron_job_name(job text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$ SELECT 'membership.' || job $$;

-- Raise an error unless pg_cron is installed in this database.
CREATE FUNCTION membership.require_pg_cron() RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = 'pg_cron is not installed in this database',
            DETAIL = format('pg_cron keeps its jobs in the database named by cron.database_name (%s); this is %s.',
                            coalesce(current_setting('cron.database_name', true), 'unset'), current_database()),
            HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database and run CREATE EXTENSION pg_cron here.';
    END IF;
END
$$;

-- Give every enabled job to pg_cron, to run in this database as "run_as"
-- (default: the calling role), and take back those that are disabled,
-- unregistered or registered for another role.  Idempotent: a second call
-- changes nothing.  Needs pg_cron's privileges, normally a superuser's.
CREATE FUNCTION membership.schedule_jobs(run_as text DEFAULT NULL)
    RETURNS TABLE (job text, schedule text, cron_job_id bigint, action text)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_user text := coalesce(run_as, current_user);
    v_role pg_roles;
    d record;
    c record;
BEGIN
    PERFORM membership.require_pg_cron();
    SELECT * INTO v_role FROM pg_roles r WHERE r.rolname = v_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('role "%s" does not exist', v_user);
    END IF;
    IF NOT v_role.rolcanlogin THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('role "%s" cannot log in', v_user),
            DETAIL = 'pg_cron connects as the role it runs a job for.';
    END IF;
    IF NOT (v_role.rolsuper OR pg_has_role(v_user, 'membership_worker', 'USAGE')) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('role "%s" cannot run the jobs', v_user),
            HINT = format('GRANT membership_worker TO %I.', v_user);
    END IF;

    -- take back what should not be there as it is
    FOR c IN
        SELECT j.jobid, substr(j.jobname, 12) AS job, j.schedule
        FROM cron.job j
        WHERE starts_with(j.jobname, 'membership.') AND j.database = current_database()
          AND (j.username <> v_user
               OR NOT EXISTS (SELECT FROM membership.job_definitions() x
                              WHERE membership.cron_job_name(x.job) = j.jobname AND x.enabled))
        ORDER BY j.jobid
    LOOP
        PERFORM cron.unschedule(c.jobid);
        job := c.job; schedule := c.schedule; cron_job_id := c.jobid; action := 'unscheduled';
        RETURN NEXT;
    END LOOP;

    FOR d IN SELECT * FROM membership.job_definitions() x WHERE x.enabled LOOP
        job := d.job;
        schedule := d.schedule;
        SELECT j.jobid, j.schedule = d.schedule AND j.command = format('CALL membership.run_job(%L)', d.job)
                        AND j.active AS same
        INTO c
        FROM cron.job j
        WHERE j.jobname = membership.cron_job_name(d.job) AND j.username = v_user
          AND j.database = current_database();
        IF NOT FOUND THEN
            cron_job_id := cron.schedule_in_database(membership.cron_job_name(d.job), d.schedule,
                                                     format('CALL membership.run_job(%L)', d.job),
                                                     current_database(), run_as, true);
            action := 'scheduled';
        ELSIF c.same THEN
            cron_job_id := c.jobid;
            action := 'unchanged';
        ELSE
            PERFORM cron.alter_job(c.jobid, d.schedule, format('CALL membership.run_job(%L)', d.job),
                                   current_database(), v_user, true);
            cron_job_id := c.jobid;
            action := 'updated';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION membership.schedule_jobs(text) TO membership_platform_admin;
COMMENT ON FUNCTION membership.schedule_jobs(text) IS
    'register every enabled job with pg_cron in this database (idempotent); needs pg_cron privileges';

-- Take every job of the extension in this database back from pg_cron.
CREATE FUNCTION membership.unschedule_jobs() RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_id bigint;
    v_n integer := 0;
BEGIN
    PERFORM membership.require_pg_cron();
    FOR v_id IN
        SELECT j.jobid FROM cron.job j
        WHERE starts_with(j.jobname, 'membership.') AND j.database = current_database()
        ORDER BY j.jobid
    LOOP
        PERFORM cron.unschedule(v_id);
        v_n := v_n + 1;
    END LOOP;
    RETURN v_n;
END
$$;
GRANT EXECUTE ON FUNCTION membership.unschedule_jobs() TO membership_platform_admin;
COMMENT ON FUNCTION membership.unschedule_jobs() IS
    'remove every job of the extension in this database from pg_cron; returns how many';
