-- Earning points: the rule evaluation that single earns and batches
-- share, earn_points(), earn_points_batch() and reverse_earn().

-- What the earn rules are applied to: one event, with what its member's
-- account and program make of it.
CREATE TYPE membership.loyalty_earn_input AS (
    idx             integer,
    source_type     text,
    amount_cents    bigint,
    category        text,
    occurred_at     timestamptz,
    first_purchase  boolean,
    tier_multiplier numeric,
    points_per_unit numeric,
    unit_cents      integer
);

-- The points each event earns under the organisation's rules: base points
-- from the amount (points_per_unit per unit_cents), times the best
-- category multiplier, times the tier multiplier, plus the best rule of
-- each bonus kind that applies (fixed_bonus, order_threshold,
-- first_purchase for purchases; signup, review, referral for those
-- actions).  rules lists the ids of the rules applied.  Set-based: the
-- organisation's rules are read once per call (so a change applies to the
-- next earn) and matched against every event; earn_points() passes one
-- event, earn_points_batch() a whole wave.
CREATE FUNCTION membership.loyalty_earn_calc(organisation uuid, events membership.loyalty_earn_input[])
    RETURNS TABLE (idx integer, points bigint, rules bigint[])
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH r AS MATERIALIZED (
        SELECT x.id, x.kind, x.category, x.multiplier, x.bonus_points, x.min_amount_cents, x.priority,
               x.valid_from, x.valid_until
        FROM membership.loyalty_earn_rules x
        WHERE x.organisation_id = loyalty_earn_calc.organisation AND x.active
    )
    SELECT e.idx,
           (floor(floor(e.amount_cents * e.points_per_unit / e.unit_cents)
                  * coalesce(b.multiplier, 1) * e.tier_multiplier) + coalesce(b.bonus, 0))::bigint,
           coalesce(b.ids, '{}')
    FROM unnest(events) e
    LEFT JOIN LATERAL (
        SELECT max(best.multiplier) AS multiplier, sum(best.bonus_points) AS bonus,
               array_agg(best.id ORDER BY best.id) AS ids
        FROM (SELECT DISTINCT ON (r.kind) r.id, r.multiplier, r.bonus_points
              FROM r
              WHERE (r.valid_from IS NULL OR r.valid_from <= e.occurred_at)
                AND (r.valid_until IS NULL OR r.valid_until > e.occurred_at)
                AND CASE r.kind
                        WHEN 'category_multiplier' THEN r.category = e.category AND e.amount_cents > 0
                        WHEN 'fixed_bonus' THEN e.amount_cents > 0 AND (r.category IS NULL OR r.category = e.category)
                        WHEN 'order_threshold' THEN e.amount_cents >= r.min_amount_cents
                                                    AND (r.category IS NULL OR r.category = e.category)
                        WHEN 'first_purchase' THEN e.amount_cents > 0 AND e.first_purchase
                        ELSE r.kind = e.source_type
                    END
              ORDER BY r.kind, r.priority DESC, r.id) best
    ) b ON true;
END
$$;

-- What is wrong with an event, or NULL (src/ledger.c): what earn_points()
-- checks before anything else, and earn_points_batch() reports per event.
CREATE FUNCTION membership.loyalty_event_problem(amount_cents bigint, source_type text, source_ref text,
                                                 category text, occurred_at timestamptz)
    RETURNS text
    LANGUAGE C STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'membership_loyalty_event_problem';

-- Make sure the member has an account (creating the program with its
-- defaults first if need be).  Raises a clear error for a member that is
-- not one of the organisation's.  The tenant must be set.
CREATE FUNCTION membership.loyalty_open_account(organisation uuid, member uuid) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF member IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'member must not be null';
    END IF;
    IF NOT EXISTS (SELECT FROM membership.members m WHERE m.id = member AND m.organisation_id = organisation) THEN
        RAISE EXCEPTION USING ERRCODE = 'no_data_found',
            MESSAGE = format('member %s does not exist in this organisation', member);
    END IF;
    PERFORM membership.loyalty_ensure_program(organisation);
    INSERT INTO membership.loyalty_accounts (organisation_id, member_id, tier)
    SELECT organisation, member,
           (SELECT t.tier FROM membership.loyalty_tiers t WHERE t.organisation_id = organisation
            ORDER BY t.threshold LIMIT 1)
    ON CONFLICT DO NOTHING;
END
$$;

-- Record a tier upgrade's notice.
CREATE FUNCTION membership.loyalty_upgrade_notice(organisation uuid, member uuid, tier text, expires date)
    RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
#variable_conflict use_column
BEGIN
    RETURN (
        SELECT membership.loyalty_notice(organisation, member, 'tier_upgrade',
            format('Welcome to %s', initcap(tier)),
            format('You have reached the %s tier, yours until %s.', initcap(tier), to_char(expires, 'YYYY-MM-DD')),
            jsonb_build_object('subject', tier || ':' || to_char(expires, 'YYYY-MM-DD'), 'tier', tier,
                               'tier_expires_at', expires)));
END
$$;

-- The idempotency check of an earn that wrote nothing: the entry with the
-- same key must be the same event.  Returns its points.
CREATE FUNCTION membership.loyalty_earn_replay(organisation uuid, member uuid, amount_cents bigint,
                                               source_type text, source_ref text, category text,
                                               occurred_at timestamptz)
    RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    l membership.loyalty_ledger;
BEGIN
    SELECT * INTO l FROM membership.loyalty_ledger x
    WHERE x.organisation_id = organisation
      AND x.idempotency_key = 'earn:' || loyalty_earn_replay.source_type || ':' || loyalty_earn_replay.source_ref;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF l.member_id <> member OR l.amount_cents <> loyalty_earn_replay.amount_cents
       OR l.category IS DISTINCT FROM loyalty_earn_replay.category
       OR (loyalty_earn_replay.occurred_at IS NOT NULL AND l.occurred_at <> loyalty_earn_replay.occurred_at) THEN
        RAISE EXCEPTION USING ERRCODE = 'unique_violation',
            MESSAGE = format('%s "%s" was already earned with different parameters', source_type, source_ref),
            DETAIL = format('It earned %s points for member %s, %s cents, category %s, at %s.',
                            l.points, l.member_id, l.amount_cents, coalesce(l.category, 'none'), l.occurred_at),
            HINT = 'A replay must repeat the original event; a new event needs a new source_ref.';
    END IF;
    RETURN l.points;
END
$$;

-- Upgrade the tier of those of the members whose qualifying points of the
-- year reached a higher tier, at once: tier_expires_at is the end of the
-- following calendar year, a scheduled downgrade is cancelled, and the
-- member gets a notice.  Returns how many were upgraded.  The accounts
-- must be locked by the caller.
CREATE FUNCTION membership.loyalty_apply_upgrades(organisation uuid, members uuid[]) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    v_result bigint;
BEGIN
    WITH best AS (
        SELECT a.member_id, cur.threshold AS current_threshold, b.tier, b.threshold
        FROM membership.loyalty_accounts a
        JOIN membership.loyalty_tiers cur ON cur.organisation_id = a.organisation_id AND cur.tier = a.tier
        CROSS JOIN LATERAL (SELECT t.tier, t.threshold FROM membership.loyalty_tiers t
                            WHERE t.organisation_id = a.organisation_id AND t.threshold <= a.qualifying_points
                            ORDER BY t.threshold DESC LIMIT 1) b
        WHERE a.organisation_id = loyalty_apply_upgrades.organisation AND a.member_id = ANY (members)
    ), up AS (
        UPDATE membership.loyalty_accounts a
        SET tier = best.tier, tier_expires_at = make_date(a.qualifying_year + 1, 12, 31),
            downgrade_to = NULL, downgrade_at = NULL
        FROM best
        WHERE a.member_id = best.member_id AND a.organisation_id = loyalty_apply_upgrades.organisation
          AND best.threshold > best.current_threshold
        RETURNING a.member_id, a.tier, a.tier_expires_at
    )
    -- count() of a non-null result: every notice is recorded, new or not
    SELECT count(membership.loyalty_upgrade_notice(organisation, up.member_id, up.tier, up.tier_expires_at))
    INTO v_result
    FROM up;
    RETURN v_result;
END
$$;

-- Earn points for an event (a purchase: amount_cents > 0; or an action:
-- source_type signup, review or referral).  Returns the points earned.
-- "partner" (set by partner_earn()) earns at that partner's rate instead
-- of the program's.
-- Idempotent on (organisation, source_type, source_ref): a replay returns
-- the same points and writes nothing; a replay of another event raises.
--
-- The hot path is two statements: lock the account and evaluate the rules;
-- then one statement that writes the ledger entry (ON CONFLICT DO NOTHING
-- is the idempotency check), the bucket and the account, upgrading the
-- tier when the year's qualifying points cross a threshold.
CREATE FUNCTION membership.earn_points(organisation uuid, member uuid, amount_cents bigint,
                                       source_type text, source_ref text, category text DEFAULT NULL,
                                       occurred_at timestamptz DEFAULT NULL, partner uuid DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    SET plan_cache_mode = force_generic_plan
    AS $$
DECLARE
    v_at timestamptz := coalesce(occurred_at, now());
    v_problem text := membership.loyalty_event_problem(amount_cents, source_type, source_ref, category, v_at);
    v_points bigint;
    v_rules bigint[];
    v_balance bigint;
    v_year integer := date_part('year', v_at AT TIME ZONE 'UTC');
    v_months integer;
    v_id bigint;
    v_old_threshold bigint;
    v_new_threshold bigint;
BEGIN
    IF organisation IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'organisation must not be null';
    END IF;
    PERFORM membership.set_tenant(organisation);
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = CASE WHEN v_problem LIKE '%must not be null' THEN 'null_value_not_allowed'
                                             ELSE 'invalid_parameter_value' END,
            MESSAGE = v_problem;
    END IF;
    FOR attempt IN 1 .. 2 LOOP
        SELECT c.points, c.rules, a.balance, p.expiry_months, t.threshold
        INTO v_points, v_rules, v_balance, v_months, v_old_threshold
        FROM membership.loyalty_accounts a
        JOIN membership.loyalty_programs p ON p.organisation_id = a.organisation_id
        JOIN membership.loyalty_tiers t ON t.organisation_id = a.organisation_id AND t.tier = a.tier
        LEFT JOIN membership.loyalty_partners lp ON lp.organisation_id = a.organisation_id
                                                AND lp.provider_id = partner AND lp.active
        CROSS JOIN LATERAL membership.loyalty_earn_calc(a.organisation_id, ARRAY[
            ROW(1, source_type, amount_cents, category, v_at, a.purchases = 0, t.multiplier,
                coalesce(lp.points_per_unit, p.points_per_unit),
                coalesce(lp.unit_cents, p.unit_cents))::membership.loyalty_earn_input]) c
        WHERE a.member_id = member AND a.organisation_id = organisation
        FOR UPDATE OF a;
        EXIT WHEN FOUND;
        PERFORM membership.loyalty_open_account(organisation, member);
    END LOOP;

    WITH entry AS (
        INSERT INTO membership.loyalty_ledger AS l
            (organisation_id, member_id, kind, points, balance_after, idempotency_key, source_type, source_ref,
             amount_cents, category, provider_id, details, occurred_at)
        VALUES (organisation, member, CASE WHEN amount_cents > 0 THEN 'EARN' ELSE 'BONUS' END, v_points,
                v_balance + v_points, 'earn:' || source_type || ':' || source_ref, source_type, source_ref,
                amount_cents, category, partner, jsonb_build_object('rules', v_rules), v_at)
        ON CONFLICT (organisation_id, idempotency_key) DO NOTHING
        RETURNING l.id, l.points
    ), bucket AS (
        INSERT INTO membership.loyalty_buckets (organisation_id, member_id, ledger_id, points, remaining,
                                                earned_at, expires_at)
        SELECT organisation, member, e.id, e.points, e.points, v_at,
               (v_at AT TIME ZONE 'UTC')::date + make_interval(months => v_months)
        FROM entry e WHERE e.points > 0
    ), account AS (
        UPDATE membership.loyalty_accounts a SET
            balance = a.balance + e.points,
            lifetime_points = a.lifetime_points + e.points,
            purchases = a.purchases + (amount_cents > 0)::integer,
            qualifying_year = greatest(a.qualifying_year, v_year),
            qualifying_points = CASE WHEN v_year > a.qualifying_year THEN e.points
                                     WHEN v_year = a.qualifying_year THEN a.qualifying_points + e.points
                                     ELSE a.qualifying_points END,
            last_activity_at = greatest(a.last_activity_at, v_at)
        FROM entry e
        WHERE a.member_id = member AND a.organisation_id = organisation
        RETURNING a.qualifying_points
    )
    SELECT e.id, (SELECT max(t.threshold) FROM membership.loyalty_tiers t
                  WHERE t.organisation_id = organisation AND t.threshold <= ac.qualifying_points)
    INTO v_id, v_new_threshold
    FROM entry e, account ac;

    IF v_id IS NULL THEN
        RETURN membership.loyalty_earn_replay(organisation, member, amount_cents, source_type, source_ref,
                                              category, occurred_at);
    END IF;
    IF v_new_threshold > v_old_threshold THEN
        PERFORM membership.loyalty_apply_upgrades(organisation, ARRAY[member]);
    END IF;
    RETURN v_points;
END
$$;
GRANT EXECUTE ON FUNCTION membership.earn_points(uuid, uuid, bigint, text, text, text, timestamptz, uuid)
    TO membership_platform_admin;
COMMENT ON FUNCTION membership.earn_points(uuid, uuid, bigint, text, text, text, timestamptz, uuid) IS
    'earn points for a purchase or an action under the organisation''s rules; idempotent on (source_type, source_ref)';

-- One event of a batch, as earn_points_batch() carries it between waves.
CREATE TYPE membership.loyalty_batch_event AS (
    idx          integer,
    member_id    uuid,
    amount_cents bigint,
    source_type  text,
    source_ref   text,
    category     text,
    occurred_at  timestamptz,
    problem      text
);

-- Earn points for a batch of order events, thousands per call, set-based:
-- each statement handles the whole batch.  events is a JSON array of
-- objects with member_id (or the organisation's external_id),
-- amount_cents, source_type, source_ref, and optionally category and
-- occurred_at.  Returns one row per event, in order: status "earned",
-- "replayed" (the key was earned before, or earlier in this batch: the
-- same points, nothing written) or "rejected" (with the error; nothing
-- written for it).  Events of one member are applied in array order, and
-- a tier upgrade reached by one event raises the multiplier of the
-- member's next events (each "wave" applies every member's events up to
-- the one that crosses a threshold).
CREATE FUNCTION membership.earn_points_batch(organisation uuid, events jsonb)
    RETURNS TABLE (idx integer, source_type text, source_ref text, member_id uuid, points bigint,
                   status text, error text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_all membership.loyalty_batch_event[];
    v_pending membership.loyalty_batch_event[];
    v_members uuid[];
    v_done_idx integer[] := '{}';
    v_done_points bigint[] := '{}';
    v_wave_idx integer[];
    v_wave_points bigint[];
    v_cut_members uuid[];
    v_cut_idx integer[];
    v_upgrade uuid[];
    v_prior jsonb;
    v_n integer;
BEGIN
    PERFORM membership.enter_organisation(organisation);
    IF events IS NULL OR jsonb_typeof(events) <> 'array' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'events must be a JSON array';
    END IF;
    v_n := jsonb_array_length(events);
    IF v_n > 100000 THEN
        RAISE EXCEPTION USING ERRCODE = 'program_limit_exceeded',
            MESSAGE = format('a batch holds at most 100000 events, not %s', v_n),
            HINT = 'Split the events into several batches.';
    END IF;
    PERFORM membership.loyalty_ensure_program(organisation);

    -- Parse and check every event; find its member.
    SELECT array_agg(ROW(e.idx, coalesce(by_id.id, by_external_id.id), f.amount_cents, f.source_type,
                         f.source_ref, f.category, f.occurred_at,
                         CASE WHEN jsonb_typeof(e.x) <> 'object' THEN 'event must be a JSON object'
                              -- amount_cents is NULL when amount_text is not an integer
                              WHEN f.amount_text IS NOT NULL AND f.amount_cents IS NULL
                                  THEN 'amount_cents must be an integer'
                              WHEN e.x ? 'member_id' = e.x ? 'external_id'
                                  THEN 'give the member_id or the external_id of the member'
                              ELSE coalesce(membership.loyalty_event_problem(f.amount_cents, f.source_type,
                                                                             f.source_ref, f.category, f.occurred_at),
                                            CASE WHEN coalesce(by_id.id, by_external_id.id) IS NULL
                                                 THEN 'member does not exist in this organisation' END)
                         END)::membership.loyalty_batch_event ORDER BY e.idx)
    INTO v_all
    FROM jsonb_array_elements(events) WITH ORDINALITY AS e(x, idx)
    CROSS JOIN LATERAL (
        SELECT CASE WHEN jsonb_typeof(e.x) = 'object' THEN e.x ->> 'amount_cents' END AS amount_text,
               CASE WHEN jsonb_typeof(e.x) = 'object' AND (e.x ->> 'amount_cents') ~ '^-?[0-9]{1,18}$'
                    THEN (e.x ->> 'amount_cents')::bigint END AS amount_cents,
               CASE WHEN jsonb_typeof(e.x) = 'object' THEN e.x ->> 'source_type' END AS source_type,
               CASE WHEN jsonb_typeof(e.x) = 'object' THEN e.x ->> 'source_ref' END AS source_ref,
               CASE WHEN jsonb_typeof(e.x) = 'object' THEN e.x ->> 'category' END AS category,
               CASE WHEN jsonb_typeof(e.x) = 'object'
                    THEN coalesce((e.x ->> 'occurred_at')::timestamptz, now()) END AS occurred_at,
               CASE WHEN jsonb_typeof(e.x) = 'object' AND (e.x ->> 'member_id') ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
                    THEN (e.x ->> 'member_id')::uuid END AS member_uuid,
               CASE WHEN jsonb_typeof(e.x) = 'object' THEN e.x ->> 'external_id' END AS external_id
        OFFSET 0  -- evaluate each field once, not at every use
    ) f
    LEFT JOIN membership.members by_id
           ON by_id.id = f.member_uuid AND by_id.organisation_id = earn_points_batch.organisation
    LEFT JOIN LATERAL (
        SELECT m.id FROM membership.members m
        WHERE f.member_uuid IS NULL AND m.organisation_id = earn_points_batch.organisation
          AND m.external_id = f.external_id
        OFFSET 0  -- looked up by the index, only for events that give an external_id
    ) by_external_id ON true;

    -- What was earned before under the keys of this batch, looked up by
    -- the unique index (a jsonb object: key -> the entry).
    SELECT jsonb_object_agg(l.idempotency_key, jsonb_build_object('member_id', l.member_id, 'points', l.points,
                                                                  'amount_cents', l.amount_cents,
                                                                  'category', l.category))
    INTO v_prior
    FROM membership.loyalty_ledger l
    WHERE l.organisation_id = organisation
      AND l.idempotency_key = ANY (ARRAY(SELECT 'earn:' || e.source_type || ':' || e.source_ref
                                         FROM unnest(v_all) e WHERE e.problem IS NULL));
    v_prior := coalesce(v_prior, '{}');

    -- Events that are well formed and new: not earned before, and the
    -- first of their key in this batch.  The others are replays (checked
    -- at the end) or rejected.
    SELECT array_agg(ROW(e.idx, e.member_id, e.amount_cents, e.source_type, e.source_ref, e.category,
                         e.occurred_at, NULL)::membership.loyalty_batch_event ORDER BY e.idx)
    INTO v_pending
    FROM (SELECT d.*, row_number() OVER (PARTITION BY d.source_type, d.source_ref ORDER BY d.idx) AS nth
          FROM unnest(v_all) d WHERE d.problem IS NULL) e
    WHERE e.nth = 1 AND NOT v_prior ? ('earn:' || e.source_type || ':' || e.source_ref);

    -- Open the accounts and lock them, in one order so that concurrent
    -- batches cannot deadlock.
    v_members := ARRAY(SELECT DISTINCT e.member_id FROM unnest(v_pending) e ORDER BY 1);
    INSERT INTO membership.loyalty_accounts (organisation_id, member_id, tier)
    SELECT organisation, m,
           (SELECT t.tier FROM membership.loyalty_tiers t WHERE t.organisation_id = organisation
            ORDER BY t.threshold LIMIT 1)
    FROM unnest(v_members) m
    ON CONFLICT DO NOTHING;
    PERFORM FROM membership.loyalty_accounts a
    WHERE a.organisation_id = organisation AND a.member_id = ANY (v_members)
    ORDER BY a.member_id FOR UPDATE;

    WHILE coalesce(cardinality(v_pending), 0) > 0 LOOP
        WITH ev AS MATERIALIZED (
            SELECT e.*, date_part('year', e.occurred_at AT TIME ZONE 'UTC')::integer AS year,
                   count(*) FILTER (WHERE e.amount_cents > 0)
                       OVER (PARTITION BY e.member_id ORDER BY e.idx
                             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) = 0 AS first_in_batch
            FROM unnest(v_pending) e
        ), tier AS (
            -- each tier with the threshold of the next one up (thresholds are unique)
            SELECT t.tier, t.multiplier, lead(t.threshold) OVER (ORDER BY t.threshold) AS next_threshold
            FROM membership.loyalty_tiers t WHERE t.organisation_id = earn_points_batch.organisation
        ), input AS (
            SELECT ev.*, a.balance, a.qualifying_year, a.qualifying_points, p.expiry_months,
                   a.purchases = 0 AND ev.first_in_batch AS first_purchase, t.multiplier AS tier_multiplier,
                   p.points_per_unit, p.unit_cents, t.next_threshold
            FROM ev
            JOIN membership.loyalty_accounts a ON a.member_id = ev.member_id
                                              AND a.organisation_id = earn_points_batch.organisation
            JOIN membership.loyalty_programs p ON p.organisation_id = a.organisation_id
            JOIN tier t ON t.tier = a.tier
        ), earned AS (
            SELECT * FROM membership.loyalty_earn_calc(organisation, ARRAY(
                SELECT ROW(i.idx, i.source_type, i.amount_cents, i.category, i.occurred_at, i.first_purchase,
                           i.tier_multiplier, i.points_per_unit, i.unit_cents)::membership.loyalty_earn_input
                FROM input i))
        ), calc AS (
            SELECT i.*, c.points, c.rules,
                   sum(c.points) OVER w AS running,
                   sum(c.points) FILTER (WHERE i.year >= i.qualifying_year) OVER w AS running_qualifying
            FROM input i JOIN earned c ON c.idx = i.idx
            WINDOW w AS (PARTITION BY i.member_id ORDER BY i.idx)
        ), cut AS (
            SELECT calc.member_id, min(calc.idx) AS idx FROM calc
            WHERE calc.qualifying_points + calc.running_qualifying >= calc.next_threshold
            GROUP BY calc.member_id
        ), accepted AS (
            SELECT calc.*, max(calc.year) OVER (PARTITION BY calc.member_id) AS last_year
            FROM calc LEFT JOIN cut ON cut.member_id = calc.member_id
            WHERE cut.idx IS NULL OR calc.idx <= cut.idx
        ), entry AS (
            INSERT INTO membership.loyalty_ledger AS l
                (organisation_id, member_id, kind, points, balance_after, idempotency_key, source_type, source_ref,
                 amount_cents, category, details, occurred_at)
            SELECT organisation, x.member_id, CASE WHEN x.amount_cents > 0 THEN 'EARN' ELSE 'BONUS' END, x.points,
                   x.balance + x.running, 'earn:' || x.source_type || ':' || x.source_ref, x.source_type,
                   x.source_ref, x.amount_cents, x.category, jsonb_build_object('rules', x.rules), x.occurred_at
            FROM accepted x ORDER BY x.idx
            RETURNING l.id, l.member_id, l.points, l.occurred_at
        ), bucket AS (
            INSERT INTO membership.loyalty_buckets (organisation_id, member_id, ledger_id, points, remaining,
                                                    earned_at, expires_at)
            SELECT organisation, e.member_id, e.id, e.points, e.points, e.occurred_at,
                   (e.occurred_at AT TIME ZONE 'UTC')::date + make_interval(months => p.expiry_months)
            FROM entry e, membership.loyalty_programs p
            WHERE p.organisation_id = earn_points_batch.organisation AND e.points > 0
        ), account AS (
            UPDATE membership.loyalty_accounts a SET
                balance = a.balance + s.points,
                lifetime_points = a.lifetime_points + s.points,
                purchases = a.purchases + s.purchases,
                qualifying_year = greatest(a.qualifying_year, s.last_year),
                qualifying_points = CASE WHEN s.last_year > a.qualifying_year THEN s.last_year_points
                                         ELSE a.qualifying_points + s.same_year_points END,
                last_activity_at = greatest(a.last_activity_at, s.last_at)
            FROM (SELECT x.member_id, sum(x.points) AS points, count(*) FILTER (WHERE x.amount_cents > 0) AS purchases,
                         max(x.year) AS last_year, max(x.occurred_at) AS last_at,
                         sum(x.points) FILTER (WHERE x.year = x.qualifying_year) AS same_year_points,
                         sum(x.points) FILTER (WHERE x.year = x.last_year) AS last_year_points,
                         max(x.next_threshold) AS next_threshold
                  FROM accepted x GROUP BY x.member_id) s
            WHERE a.member_id = s.member_id AND a.organisation_id = earn_points_batch.organisation
            RETURNING a.member_id, a.qualifying_points >= s.next_threshold AS may_upgrade
        )
        SELECT (SELECT array_agg(x.idx) FROM accepted x), (SELECT array_agg(x.points) FROM accepted x),
               (SELECT array_agg(c.member_id) FROM cut c), (SELECT array_agg(c.idx) FROM cut c),
               (SELECT array_agg(ac.member_id ORDER BY ac.member_id) FROM account ac WHERE ac.may_upgrade)
        INTO v_wave_idx, v_wave_points, v_cut_members, v_cut_idx, v_upgrade;

        v_done_idx := v_done_idx || v_wave_idx;
        v_done_points := v_done_points || v_wave_points;
        -- Only an account whose qualifying points now reach the next tier
        -- up can be upgraded (every pending member's account is written,
        -- and so checked, in the first wave).
        IF v_upgrade IS NOT NULL THEN
            PERFORM membership.loyalty_apply_upgrades(organisation, v_upgrade);
        END IF;
        -- what is left: each member's events after the one that crossed
        SELECT array_agg(e ORDER BY e.idx) INTO v_pending
        FROM unnest(v_pending) e
        JOIN unnest(v_cut_members, v_cut_idx) AS c(member_id, idx) ON c.member_id = e.member_id AND e.idx > c.idx;
    END LOOP;

    RETURN QUERY
    WITH done AS (
        -- the points of each event earned now, by its position
        SELECT * FROM unnest(v_done_idx, v_done_points) AS d(idx, points)
    ), ev AS (
        SELECT e.*, 'earn:' || e.source_type || ':' || e.source_ref AS key,
               first_value(e) OVER (PARTITION BY e.problem IS NULL, e.source_type, e.source_ref ORDER BY e.idx)
                   AS first
        FROM unnest(v_all) e
    ), judged AS (
        SELECT ev.*, v_prior -> ev.key AS prior,
               CASE WHEN ev.problem IS NOT NULL THEN ev.problem
                    WHEN v_prior ? ev.key
                         AND ((v_prior -> ev.key ->> 'member_id')::uuid <> ev.member_id
                              OR (v_prior -> ev.key ->> 'amount_cents')::bigint <> ev.amount_cents
                              OR v_prior -> ev.key ->> 'category' IS DISTINCT FROM ev.category)
                         THEN format('%s "%s" was already earned with different parameters', ev.source_type, ev.source_ref)
                    WHEN NOT v_prior ? ev.key AND (ev.first).idx <> ev.idx
                         AND ((ev.first).member_id <> ev.member_id OR (ev.first).amount_cents <> ev.amount_cents
                              OR (ev.first).category IS DISTINCT FROM ev.category)
                         THEN format('%s "%s" was already earned with different parameters', ev.source_type, ev.source_ref)
               END AS error
        FROM ev
    )
    SELECT j.idx, j.source_type, j.source_ref, j.member_id,
           CASE WHEN j.error IS NOT NULL THEN NULL
                WHEN j.prior IS NOT NULL THEN (j.prior ->> 'points')::bigint
                ELSE d.points END,
           CASE WHEN j.error IS NOT NULL THEN 'rejected'
                WHEN j.prior IS NOT NULL OR (j.first).idx <> j.idx THEN 'replayed'
                ELSE 'earned' END,
           j.error
    FROM judged j
    LEFT JOIN done d ON d.idx = (j.first).idx
    ORDER BY j.idx;
END
$$;
GRANT EXECUTE ON FUNCTION membership.earn_points_batch(uuid, jsonb) TO membership_platform_admin;
COMMENT ON FUNCTION membership.earn_points_batch(uuid, jsonb) IS
    'earn points for a batch of order events, set-based, with one result per event';
