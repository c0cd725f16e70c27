-- Nightly and yearly ledger jobs: expiry with its reminders, tier
-- evaluation and downgrades, and the reconciliation of every account.

-- Expire, in every organisation, what is left of the buckets that are due
-- on "as_of": under the rolling model each bucket at its expires_at, under
-- the inactivity model every open bucket of an account without activity
-- for expiry_months.  Only the unredeemed remainder expires; each account
-- gets one EXPIRE entry per batch.  Set-based, in batches of
-- "batch_size" buckets, each batch locking its accounts first (in one
-- order) like every other writer.  Idempotent: a rerun finds nothing due.
-- Also records the reminders of what expires in the next 30 days.
-- Returns the number of buckets expired.
CREATE FUNCTION membership.expire_points(as_of date DEFAULT current_date, batch_size integer DEFAULT 50000)
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_orgs uuid[] := ARRAY(SELECT membership.all_organisations() ORDER BY 1);
    v_org uuid;
    v_program membership.loyalty_programs;
    v_members uuid[];
    v_n bigint;
    v_total bigint := 0;
BEGIN
    IF as_of IS NULL OR NOT isfinite(as_of) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'as_of must be a finite date';
    END IF;
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'batch_size must be positive';
    END IF;
    FOR i IN 1 .. coalesce(cardinality(v_orgs), 0) LOOP
        v_org := v_orgs[i];
        PERFORM membership.set_tenant(v_org);
        SELECT * INTO v_program FROM membership.loyalty_programs p WHERE p.organisation_id = v_org;
        CONTINUE WHEN NOT FOUND;
        LOOP
            IF v_program.expiry_model = 'rolling' THEN
                v_members := ARRAY(SELECT DISTINCT d.member_id FROM
                                       (SELECT b.member_id FROM membership.loyalty_buckets b
                                        WHERE b.organisation_id = v_org AND b.remaining > 0 AND b.expires_at <= as_of
                                        LIMIT batch_size) d
                                   ORDER BY 1);
            ELSE
                v_members := ARRAY(SELECT a.member_id FROM membership.loyalty_accounts a
                                   WHERE a.organisation_id = v_org AND a.balance > 0
                                     AND (a.last_activity_at AT TIME ZONE 'UTC')::date
                                         + make_interval(months => v_program.expiry_months) <= as_of
                                   ORDER BY 1 LIMIT greatest(batch_size / 10, 1));
            END IF;
            EXIT WHEN cardinality(v_members) = 0;
            PERFORM FROM membership.loyalty_accounts a
            WHERE a.organisation_id = v_org AND a.member_id = ANY (v_members)
            ORDER BY a.member_id FOR UPDATE;

            WITH due AS (
                SELECT b.ledger_id AS id, b.member_id, b.remaining
                FROM membership.loyalty_buckets b
                WHERE b.organisation_id = v_org AND b.member_id = ANY (v_members) AND b.remaining > 0
                  AND (v_program.expiry_model = 'inactivity' OR b.expires_at <= as_of)
            ), expired AS (
                UPDATE membership.loyalty_buckets b
                SET remaining = 0, expired = b.expired + d.remaining, expired_at = now()
                FROM due d WHERE b.ledger_id = d.id
            ), per_account AS (
                SELECT d.member_id, sum(d.remaining) AS points, count(*) AS buckets
                FROM due d GROUP BY d.member_id
            ), account AS (
                UPDATE membership.loyalty_accounts a SET balance = a.balance - p.points
                FROM per_account p
                WHERE a.member_id = p.member_id AND a.organisation_id = v_org
                RETURNING a.member_id, a.balance, p.points, p.buckets
            ), entry AS (
                INSERT INTO membership.loyalty_ledger (organisation_id, member_id, kind, points, balance_after,
                                                       details)
                SELECT v_org, ac.member_id, 'EXPIRE', -ac.points, ac.balance,
                       jsonb_build_object('as_of', as_of, 'model', v_program.expiry_model, 'buckets', ac.buckets)
                FROM account ac
            )
            SELECT count(*) INTO v_n FROM due;
            v_total := v_total + v_n;
            PERFORM membership.report_job_progress(v_total, NULL, 'buckets expired');
        END LOOP;
        PERFORM membership.loyalty_expiry_reminders(v_org, v_program, as_of);
    END LOOP;
    PERFORM membership.set_tenant(NULL);
    RETURN v_total;
END
$$;
GRANT EXECUTE ON FUNCTION membership.expire_points(date, integer) TO membership_platform_admin, membership_worker;
COMMENT ON FUNCTION membership.expire_points(date, integer) IS
    'nightly: expire the unredeemed remainder of due buckets in every organisation; idempotent';

-- Record a reminder for every member of the organisation with points
-- expiring in the 30 days after as_of: one per member and expiry date
-- (rolling) or per member and inactivity deadline.  Returns how many are
-- new.  The tenant must be set.
CREATE FUNCTION membership.loyalty_expiry_reminders(organisation uuid, program membership.loyalty_programs,
                                                    as_of date)
    RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
#variable_conflict use_column
BEGIN
    RETURN (
        WITH expiring AS (
            SELECT b.member_id, b.expires_at AS expires, sum(b.remaining) AS points
            FROM membership.loyalty_buckets b
            WHERE program.expiry_model = 'rolling' AND b.organisation_id = organisation AND b.remaining > 0
              AND b.expires_at > as_of AND b.expires_at <= as_of + 30
            GROUP BY b.member_id, b.expires_at
            UNION ALL
            SELECT a.member_id, d.expires, a.balance
            FROM membership.loyalty_accounts a
            CROSS JOIN LATERAL (SELECT ((a.last_activity_at AT TIME ZONE 'UTC')::date
                                        + make_interval(months => program.expiry_months))::date AS expires) d
            WHERE program.expiry_model = 'inactivity' AND a.organisation_id = organisation AND a.balance > 0
              AND d.expires > as_of AND d.expires <= as_of + 30
        )
        SELECT count(*) FILTER (WHERE membership.loyalty_notice(organisation, e.member_id, 'points_expiring',
            format('%s points expire on %s', e.points, to_char(e.expires, 'YYYY-MM-DD')),
            format('Use your %s points before %s, or they expire.', e.points, to_char(e.expires, 'YYYY-MM-DD')),
            jsonb_build_object('subject', program.expiry_model || ':' || to_char(e.expires, 'YYYY-MM-DD'), 'points', e.points,
                               'expires_on', e.expires)))
        FROM expiring e);
END
$$;

-- The qualifying points each member of the organisation earned in "year":
-- earns and bonuses that occurred in it, less what refunds took back of
-- them.  The tenant must be set.
CREATE FUNCTION membership.loyalty_qualifying_points(organisation uuid, year integer)
    RETURNS TABLE (member_id uuid, points bigint)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        SELECT l.member_id, sum(CASE WHEN l.kind = 'REVERSAL' THEN l.points - l.shortfall ELSE l.points END)::bigint
        FROM membership.loyalty_ledger l
        WHERE l.organisation_id = organisation AND l.kind IN ('EARN', 'BONUS', 'REVERSAL')
          AND l.occurred_at >= make_timestamptz(year, 1, 1, 0, 0, 0, 'UTC')
          AND l.occurred_at < make_timestamptz(year + 1, 1, 1, 0, 0, 0, 'UTC')
        GROUP BY l.member_id;
END
$$;

-- Annual tier evaluation for the year ending on year_end, in every
-- organisation: a member who stayed at or above the tier's threshold keeps
-- it until the end of the following calendar year; one below it gets a
-- downgrade to the tier the year's points deserve, scheduled after the
-- program's grace period, with a notice.  The new year's qualifying points
-- start from zero.  Idempotent.  Returns the number of downgrades
-- scheduled.
CREATE FUNCTION membership.evaluate_tiers(year_end date)
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_orgs uuid[] := ARRAY(SELECT membership.all_organisations() ORDER BY 1);
    v_org uuid;
    v_year integer := date_part('year', year_end);
    v_n bigint;
    v_total bigint := 0;
BEGIN
    IF year_end IS NULL OR NOT isfinite(year_end) THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'year_end must be a date';
    END IF;
    FOR i IN 1 .. coalesce(cardinality(v_orgs), 0) LOOP
        v_org := v_orgs[i];
        PERFORM membership.set_tenant(v_org);
        CONTINUE WHEN NOT EXISTS (SELECT FROM membership.loyalty_programs p WHERE p.organisation_id = v_org);
        WITH deserved AS (
            SELECT a.member_id, cur.threshold AS current_threshold, d.tier, d.threshold,
                   p.downgrade_grace_days
            FROM membership.loyalty_accounts a
            JOIN membership.loyalty_programs p ON p.organisation_id = a.organisation_id
            JOIN membership.loyalty_tiers cur ON cur.organisation_id = a.organisation_id AND cur.tier = a.tier
            LEFT JOIN membership.loyalty_qualifying_points(v_org, v_year) q ON q.member_id = a.member_id
            CROSS JOIN LATERAL (SELECT t.tier, t.threshold FROM membership.loyalty_tiers t
                                WHERE t.organisation_id = a.organisation_id
                                  AND t.threshold <= coalesce(q.points, 0)
                                ORDER BY t.threshold DESC LIMIT 1) d
            WHERE a.organisation_id = v_org
            FOR UPDATE OF a
        ), changed AS (
            UPDATE membership.loyalty_accounts a SET
                tier = CASE WHEN d.threshold > d.current_threshold THEN d.tier ELSE a.tier END,
                tier_expires_at = CASE WHEN d.threshold >= d.current_threshold THEN make_date(v_year + 1, 12, 31)
                                       ELSE a.tier_expires_at END,
                downgrade_to = CASE WHEN d.threshold < d.current_threshold THEN d.tier END,
                downgrade_at = CASE WHEN d.threshold < d.current_threshold
                                    THEN year_end + 1 + d.downgrade_grace_days END,
                qualifying_year = greatest(a.qualifying_year, v_year + 1),
                qualifying_points = CASE WHEN a.qualifying_year > v_year THEN a.qualifying_points ELSE 0 END
            FROM deserved d
            WHERE a.member_id = d.member_id AND a.organisation_id = v_org
            RETURNING a.member_id, a.tier, a.downgrade_to, a.downgrade_at
        )
        SELECT count(membership.loyalty_notice(v_org, c.member_id, 'tier_downgrade_notice',
                   format('Your %s tier ends on %s', initcap(c.tier), to_char(c.downgrade_at, 'YYYY-MM-DD')),
                   format('Your points in %s were below the %s threshold: from %s your tier is %s.',
                          v_year, initcap(c.tier), to_char(c.downgrade_at, 'YYYY-MM-DD'), initcap(c.downgrade_to)),
                   jsonb_build_object('subject', v_year::text, 'tier', c.tier, 'downgrade_to', c.downgrade_to,
                                      'downgrade_at', c.downgrade_at)))
        INTO v_n
        FROM changed c WHERE c.downgrade_to IS NOT NULL;
        v_total := v_total + v_n;
        PERFORM membership.report_job_progress(i, cardinality(v_orgs), 'organisations');
    END LOOP;
    PERFORM membership.set_tenant(NULL);
    RETURN v_total;
END
$$;
GRANT EXECUTE ON FUNCTION membership.evaluate_tiers(date) TO membership_platform_admin, membership_worker;
COMMENT ON FUNCTION membership.evaluate_tiers(date) IS
    'annual: keep or schedule the downgrade of every member''s tier from the year''s qualifying points';

-- Apply the downgrades due on as_of, in every organisation, with a notice.
-- Returns how many.
CREATE FUNCTION membership.apply_tier_downgrades(as_of date DEFAULT current_date)
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_orgs uuid[] := ARRAY(SELECT membership.all_organisations() ORDER BY 1);
    v_org uuid;
    v_n bigint;
    v_total bigint := 0;
BEGIN
    IF as_of IS NULL OR NOT isfinite(as_of) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'as_of must be a finite date';
    END IF;
    FOR i IN 1 .. coalesce(cardinality(v_orgs), 0) LOOP
        v_org := v_orgs[i];
        PERFORM membership.set_tenant(v_org);
        WITH due AS (
            SELECT a.member_id FROM membership.loyalty_accounts a
            WHERE a.organisation_id = v_org AND a.downgrade_at <= as_of
            ORDER BY a.member_id FOR UPDATE
        ), changed AS (
            UPDATE membership.loyalty_accounts a
            SET tier = a.downgrade_to, tier_expires_at = make_date(date_part('year', a.downgrade_at)::integer, 12, 31),
                downgrade_to = NULL, downgrade_at = NULL
            FROM due WHERE a.member_id = due.member_id AND a.organisation_id = v_org
            RETURNING a.member_id, a.tier, a.tier_expires_at
        )
        SELECT count(membership.loyalty_notice(v_org, c.member_id, 'tier_downgrade',
                   format('Your tier is now %s', initcap(c.tier)),
                   format('Your tier is %s until %s.', initcap(c.tier), to_char(c.tier_expires_at, 'YYYY-MM-DD')),
                   jsonb_build_object('subject', c.tier || ':' || to_char(c.tier_expires_at, 'YYYY-MM-DD'),
                                      'tier', c.tier)))
        INTO v_n FROM changed c;
        v_total := v_total + v_n;
    END LOOP;
    PERFORM membership.set_tenant(NULL);
    RETURN v_total;
END
$$;
GRANT EXECUTE ON FUNCTION membership.apply_tier_downgrades(date) TO membership_platform_admin, membership_worker;

-- Every account, in every organisation, that breaks an invariant of the
-- ledger: one row per account and problem.  It should always be empty.
--   balance_mismatch_ledger    cached balance <> sum of the ledger
--   balance_mismatch_buckets   cached balance <> sum of open buckets
--   balance_after_mismatch     the last entry's balance_after <> balance
--   bucket_mismatch            a bucket whose consumption does not add up
--   allocation_mismatch        an entry that took from buckets other than
--                              exactly its points
CREATE FUNCTION membership.reconcile_ledger()
    RETURNS TABLE (organisation_id uuid, member_id uuid, problem text, detail text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_orgs uuid[] := ARRAY(SELECT membership.all_organisations() ORDER BY 1);
    v_org uuid;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(v_orgs), 0) LOOP
        v_org := v_orgs[i];
        PERFORM membership.set_tenant(v_org);
        RETURN QUERY
        WITH l AS (
            SELECT x.member_id, sum(x.points) AS points, max(x.id) AS last_id
            FROM membership.loyalty_ledger x WHERE x.organisation_id = v_org GROUP BY x.member_id
        ), b AS (
            SELECT x.member_id, sum(x.remaining) AS remaining
            FROM membership.loyalty_buckets x WHERE x.organisation_id = v_org AND x.remaining > 0
            GROUP BY x.member_id
        )
        SELECT v_org, a.member_id, c.problem, c.detail
        FROM membership.loyalty_accounts a
        LEFT JOIN l ON l.member_id = a.member_id
        LEFT JOIN b ON b.member_id = a.member_id
        LEFT JOIN membership.loyalty_ledger last ON last.id = l.last_id
        CROSS JOIN LATERAL (VALUES
            ('balance_mismatch_ledger', a.balance <> coalesce(l.points, 0),
             format('balance %s, ledger %s', a.balance, coalesce(l.points, 0))),
            ('balance_mismatch_buckets', a.balance <> coalesce(b.remaining, 0),
             format('balance %s, open buckets %s', a.balance, coalesce(b.remaining, 0))),
            ('balance_after_mismatch', a.balance <> coalesce(last.balance_after, 0),
             format('balance %s, last entry %s says %s', a.balance, last.id, last.balance_after)),
            ('negative_balance', a.balance < 0, format('balance %s', a.balance))
        ) AS c(problem, broken, detail)
        WHERE a.organisation_id = v_org AND c.broken;

        RETURN QUERY
        SELECT v_org, x.member_id, 'bucket_mismatch'::text,
               format('bucket %s: %s points, %s remaining, %s expired, %s allocated', x.ledger_id, x.points, x.remaining,
                      x.expired, coalesce(al.points, 0))
        FROM membership.loyalty_buckets x
        LEFT JOIN (SELECT y.bucket_id, sum(y.points) AS points FROM membership.loyalty_allocations y
                   WHERE y.organisation_id = v_org GROUP BY y.bucket_id) al ON al.bucket_id = x.ledger_id
        WHERE x.organisation_id = v_org AND x.points <> x.remaining + x.expired + coalesce(al.points, 0);

        RETURN QUERY
        SELECT v_org, e.member_id, 'allocation_mismatch'::text,
               format('entry %s (%s, %s points) took %s from buckets', e.id, e.kind, e.points, coalesce(al.points, 0))
        FROM membership.loyalty_ledger e
        LEFT JOIN (SELECT y.ledger_id, sum(y.points) AS points FROM membership.loyalty_allocations y
                   WHERE y.organisation_id = v_org GROUP BY y.ledger_id) al ON al.ledger_id = e.id
        WHERE e.organisation_id = v_org AND e.kind IN ('REDEEM', 'REVERSAL', 'ADJUST') AND e.points < 0
          AND -e.points <> coalesce(al.points, 0);
    END LOOP;
    PERFORM membership.set_tenant(NULL);
END
$$;
GRANT EXECUTE ON FUNCTION membership.reconcile_ledger() TO membership_platform_admin, membership_worker;
COMMENT ON FUNCTION membership.reconcile_ledger() IS
    'every account that breaks an invariant of the ledger, one row per problem (always empty)';

-- The reconciliation job: the number of accounts checked; an error, with
-- the findings, if any account breaks an invariant (so the run fails and
-- job_runs keeps them).
CREATE FUNCTION membership.reconcile_ledger_job() RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_findings text;
    v_n bigint;
    v_org uuid;
BEGIN
    SELECT count(*), string_agg(format('%s %s: %s (%s)', r.organisation_id, r.member_id, r.problem, r.detail),
                                '; ' ORDER BY r.organisation_id, r.member_id, r.problem)
    INTO v_n, v_findings
    FROM (SELECT * FROM membership.reconcile_ledger() LIMIT 100) r;
    IF v_n > 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'data_corrupted',
            MESSAGE = format('the loyalty ledger does not reconcile: %s', v_findings);
    END IF;
    v_n := 0;
    FOR v_org IN SELECT membership.all_organisations() LOOP
        PERFORM membership.set_tenant(v_org);
        v_n := v_n + (SELECT count(*) FROM membership.loyalty_accounts a WHERE a.organisation_id = v_org);
    END LOOP;
    PERFORM membership.set_tenant(NULL);
    RETURN v_n;
END
$$;
GRANT EXECUTE ON FUNCTION membership.reconcile_ledger_job() TO membership_platform_admin, membership_worker;

-- The jobs (020_jobs.sql's registry).
SELECT membership.register_job('expire_points', '0 1 * * *', 'SELECT membership.expire_points()',
    'expire the unredeemed remainder of due loyalty buckets and record reminders 30 days ahead');
SELECT membership.register_job('apply_tier_downgrades', '30 1 * * *', 'SELECT membership.apply_tier_downgrades()',
    'apply the tier downgrades whose grace period has ended');
SELECT membership.register_job('evaluate_tiers', '15 0 1 1 *',
    $$SELECT membership.evaluate_tiers((date_trunc('year', current_date) - interval '1 day')::date)$$,
    'evaluate every member''s tier for the year just ended and schedule downgrades');
SELECT membership.register_job('reconcile_ledger', '30 3 * * *', 'SELECT membership.reconcile_ledger_job()',
    'check every loyalty account against its ledger and buckets; fails with the findings');
