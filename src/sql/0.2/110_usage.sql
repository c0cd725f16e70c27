-- Verification usage: per key and minute, flushed from shared memory by
-- the usage flusher (src/usage_worker.c), reported per month for invoices.

CREATE TABLE membership.usage_minutes (
    organisation_id uuid NOT NULL,
    api_key_id      bigint NOT NULL REFERENCES membership.api_keys (id) ON DELETE CASCADE,
    provider_id     uuid,
    minute          timestamptz NOT NULL,
    epoch           bigint NOT NULL,    -- the server start the counts come from
    allowed         bigint NOT NULL DEFAULT 0 CHECK (allowed >= 0),
    refused         bigint NOT NULL DEFAULT 0 CHECK (refused >= 0),
    verified_true   bigint NOT NULL DEFAULT 0 CHECK (verified_true >= 0),
    verified_false  bigint NOT NULL DEFAULT 0 CHECK (verified_false >= 0),
    flushed_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (api_key_id, minute, epoch)
);
CREATE INDEX usage_minutes_organisation_idx ON membership.usage_minutes (organisation_id, minute);
CREATE INDEX usage_minutes_minute_idx ON membership.usage_minutes (minute);
COMMENT ON TABLE membership.usage_minutes IS
    'tenant: verification calls per API key and minute (summed over epochs)';
SELECT membership.isolate_table('membership.usage_minutes');

-- Write absolute counter values from shared memory.  Counters only grow
-- within an epoch, so keeping the greater value makes a repeated flush
-- harmless.  Called by the flusher, which runs as a superuser.
CREATE FUNCTION membership.flush_usage(p_epoch bigint, p_keys bigint[], p_minutes timestamptz[],
                                       p_allowed bigint[], p_refused bigint[],
                                       p_true bigint[], p_false bigint[])
    RETURNS bigint
    LANGUAGE sql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    WITH written AS (
        INSERT INTO membership.usage_minutes AS u
            (organisation_id, api_key_id, provider_id, minute, epoch,
             allowed, refused, verified_true, verified_false)
        SELECT k.organisation_id, k.id, k.provider_id, c.minute, p_epoch,
               c.allowed, c.refused, c.verified_true, c.verified_false
        FROM unnest(p_keys, p_minutes, p_allowed, p_refused, p_true, p_false)
                 AS c(api_key_id, minute, allowed, refused, verified_true, verified_false)
        JOIN membership.api_keys k ON k.id = c.api_key_id
        ON CONFLICT (api_key_id, minute, epoch) DO UPDATE
        SET allowed = greatest(u.allowed, EXCLUDED.allowed),
            refused = greatest(u.refused, EXCLUDED.refused),
            verified_true = greatest(u.verified_true, EXCLUDED.verified_true),
            verified_false = greatest(u.verified_false, EXCLUDED.verified_false),
            flushed_at = pg_catalog.now()
        RETURNING 1)
    SELECT count(*) FROM written
$$;

-- Usage per key and calendar month (UTC), for invoices: what per-minute
-- usage becomes once it is older than membership.usage_retention.
CREATE TABLE membership.usage_months (
    organisation_id uuid NOT NULL,
    api_key_id      bigint NOT NULL REFERENCES membership.api_keys (id) ON DELETE CASCADE,
    provider_id     uuid,
    month           date NOT NULL CHECK (extract(day FROM month) = 1),
    allowed         bigint NOT NULL DEFAULT 0 CHECK (allowed >= 0),
    refused         bigint NOT NULL DEFAULT 0 CHECK (refused >= 0),
    verified_true   bigint NOT NULL DEFAULT 0 CHECK (verified_true >= 0),
    verified_false  bigint NOT NULL DEFAULT 0 CHECK (verified_false >= 0),
    PRIMARY KEY (api_key_id, month)
);
CREATE INDEX usage_months_organisation_idx ON membership.usage_months (organisation_id, month);
COMMENT ON TABLE membership.usage_months IS
    'tenant: verification calls per API key and month, rolled up from usage_minutes';
SELECT membership.isolate_table('membership.usage_months');

-- Roll per-minute usage older than its retention up into months, in the
-- same transaction that deletes it (so every call is counted once, in one
-- place or the other), and delete audit records older than theirs.  Run
-- hourly as the job expire_usage.
CREATE FUNCTION membership.expire_usage(as_of timestamptz DEFAULT pg_catalog.now())
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_cutoff timestamptz := as_of - coalesce(current_setting('membership.usage_retention', true), '30d')::interval;
    v_audit_cutoff timestamptz := as_of - coalesce(current_setting('membership.audit_retention', true), '30d')::interval;
    v_orgs uuid[] := ARRAY(SELECT membership.all_organisations());
    v_org uuid;
    v_n bigint;
    v_total bigint := 0;
BEGIN
    IF as_of IS NULL OR NOT isfinite(as_of) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'as_of must be a finite time';
    END IF;
    -- one organisation at a time: the owner role sees one tenant's rows
    FOR i IN 1 .. coalesce(cardinality(v_orgs), 0) LOOP
        v_org := v_orgs[i];
        PERFORM membership.set_tenant(v_org);
        WITH gone AS (
            DELETE FROM membership.usage_minutes u
            WHERE u.organisation_id = v_org AND u.minute < v_cutoff
            RETURNING u.*
        ), months AS (
            SELECT g.organisation_id, g.api_key_id, g.provider_id,
                   date_trunc('month', g.minute AT TIME ZONE 'UTC')::date AS month,
                   sum(g.allowed) AS allowed, sum(g.refused) AS refused,
                   sum(g.verified_true) AS verified_true, sum(g.verified_false) AS verified_false,
                   count(*) AS minutes
            FROM gone g
            GROUP BY 1, 2, 3, 4
        ), rolled AS (
            INSERT INTO membership.usage_months AS m
                (organisation_id, api_key_id, provider_id, month, allowed, refused, verified_true, verified_false)
            SELECT organisation_id, api_key_id, provider_id, month, allowed, refused, verified_true, verified_false
            FROM months
            ON CONFLICT (api_key_id, month) DO UPDATE
            SET allowed = m.allowed + EXCLUDED.allowed,
                refused = m.refused + EXCLUDED.refused,
                verified_true = m.verified_true + EXCLUDED.verified_true,
                verified_false = m.verified_false + EXCLUDED.verified_false
            RETURNING 1)
        SELECT coalesce(sum(minutes), 0) INTO v_n FROM months, (SELECT count(*) FROM rolled) AS r;
        v_total := v_total + v_n;
        DELETE FROM membership.verification_audit a
        WHERE a.organisation_id = v_org AND a.at < v_audit_cutoff;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_total := v_total + v_n;
        PERFORM membership.report_job_progress(i, cardinality(v_orgs), 'organisations');
    END LOOP;
    PERFORM membership.set_tenant(NULL);
    RETURN v_total;
END
$$;
GRANT EXECUTE ON FUNCTION membership.expire_usage(timestamptz) TO membership_worker;

SELECT membership.register_job('expire_usage', '5 * * * *', 'SELECT membership.expire_usage()',
    'roll verification usage past membership.usage_retention up into months; delete audit records past membership.audit_retention');

-- Monthly totals per provider, for invoices: calls made from from_date
-- (inclusive) to to_date (exclusive), UTC, by calendar month, whether
-- still per minute or already rolled up.  Months already rolled up count
-- whole: pass the first of a month to from_date for exact invoices.
CREATE FUNCTION membership.usage_totals(p_org uuid, from_date date, to_date date)
    RETURNS TABLE (month date, provider text, allowed bigint, refused bigint,
                   verified_true bigint, verified_false bigint)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF from_date IS NULL OR to_date IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'from_date and to_date must not be null';
    END IF;
    IF to_date <= from_date THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'to_date must be after from_date';
    END IF;
    RETURN QUERY
        SELECT u.month, coalesce(p.slug, '(organisation)'),
               sum(u.allowed)::bigint, sum(u.refused)::bigint,
               sum(u.verified_true)::bigint, sum(u.verified_false)::bigint
        FROM (SELECT date_trunc('month', m.minute AT TIME ZONE 'UTC')::date AS month, m.provider_id,
                     m.allowed, m.refused, m.verified_true, m.verified_false
              FROM membership.usage_minutes m
              WHERE m.organisation_id = p_org
                AND m.minute >= from_date::timestamp AT TIME ZONE 'UTC'
                AND m.minute < to_date::timestamp AT TIME ZONE 'UTC'
              UNION ALL
              SELECT r.month, r.provider_id, r.allowed, r.refused, r.verified_true, r.verified_false
              FROM membership.usage_months r
              WHERE r.organisation_id = p_org
                AND r.month >= date_trunc('month', from_date)::date AND r.month < to_date) AS u
        LEFT JOIN membership.providers p ON p.id = u.provider_id
        GROUP BY 1, 2
        ORDER BY 1, 2;
END
$$;

CREATE FUNCTION membership.usage_report(organisation uuid, from_date date, to_date date)
    RETURNS TABLE (month date, provider text, allowed bigint, refused bigint,
                   verified_true bigint, verified_false bigint)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    PERFORM membership.enter_organisation(organisation);
    RETURN QUERY SELECT * FROM membership.usage_totals(organisation, from_date, to_date);
END
$$;
GRANT EXECUTE ON FUNCTION membership.usage_report(uuid, date, date) TO membership_platform_admin;
COMMENT ON FUNCTION membership.usage_report(uuid, date, date) IS
    'verification calls per month and provider, for invoices (UTC months in [from_date, to_date))';

CREATE FUNCTION membership_api.usage_report(from_date date, to_date date)
    RETURNS TABLE (month date, provider text, allowed bigint, refused bigint,
                   verified_true bigint, verified_false bigint)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'org_admin');
BEGIN
    RETURN QUERY SELECT * FROM membership.usage_totals(v_caller.organisation_id, from_date, to_date);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.usage_report(date, date) TO membership_org_admin;
COMMENT ON FUNCTION membership_api.usage_report(date, date) IS
    'the calling administrator''s organisation: verification calls per month and provider';

-- Monitoring: the live counters in shared memory and the state of the
-- limiter, the key cache, the flusher and the audit queue.
CREATE FUNCTION membership.read_verification_counters(
        OUT api_key_id bigint, OUT minute timestamptz, OUT allowed bigint, OUT refused bigint,
        OUT verified_true bigint, OUT verified_false bigint, OUT flushed boolean)
    RETURNS SETOF record
    LANGUAGE C VOLATILE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'membership_verification_counters';
GRANT EXECUTE ON FUNCTION membership.read_verification_counters() TO membership_platform_admin;

CREATE FUNCTION membership.read_metering_status(
        OUT limiter_slots_used bigint, OUT limiter_slots bigint, OUT fail_open_calls bigint,
        OUT key_cache_used bigint, OUT key_cache_size bigint, OUT key_cache_fills bigint,
        OUT key_cache_full bigint, OUT last_flush_at timestamptz, OUT flush_lag interval,
        OUT flusher_pid integer, OUT audit_queued bigint, OUT audit_dropped bigint,
        OUT epoch bigint, OUT verify_cache_used bigint, OUT verify_cache_size bigint,
        OUT verify_cache_fills bigint, OUT verify_cache_evictions bigint,
        OUT other_database_calls bigint)
    LANGUAGE C VOLATILE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'membership_metering_status';
GRANT EXECUTE ON FUNCTION membership.read_metering_status() TO membership_platform_admin;

-- Views for DBAs: they run as the one who queries them, so a superuser
-- sees every organisation and anyone else nothing they could not see.
CREATE VIEW membership.verification_counters WITH (security_invoker = true) AS
    SELECT c.*, k.organisation_id, p.slug AS provider, k.prefix AS api_key
    FROM membership.read_verification_counters() c
    LEFT JOIN membership.api_keys k ON k.id = c.api_key_id
    LEFT JOIN membership.providers p ON p.id = k.provider_id;
COMMENT ON VIEW membership.verification_counters IS
    'live verification counters per key and minute (platform administrators call read_verification_counters())';
ALTER VIEW membership.verification_counters OWNER TO membership_owner;

CREATE VIEW membership.metering_status WITH (security_invoker = true) AS
    SELECT * FROM membership.read_metering_status();
COMMENT ON VIEW membership.metering_status IS
    'limiter fill, fail-open calls, key and answer caches, flush lag and audit queue, as one row';
ALTER VIEW membership.metering_status OWNER TO membership_owner;
