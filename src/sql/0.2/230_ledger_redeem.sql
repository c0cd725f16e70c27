-- Spending points: redemptions, refunds (reverse_earn) and adjustments.
-- Each takes the account row lock first, so that whatever else touches
-- the same account waits; the buckets are then consumed oldest-expiry
-- first by one statement, and every bucket consumed is recorded.

-- Lock the member's account and return it (NULL fields when there is
-- none).  The tenant must be set.
CREATE FUNCTION membership.loyalty_lock_account(organisation uuid, member uuid)
    RETURNS membership.loyalty_accounts
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    v_result membership.loyalty_accounts;
BEGIN
    SELECT a.* INTO v_result
    FROM membership.loyalty_accounts a
    WHERE a.member_id = member AND a.organisation_id = organisation
    FOR UPDATE;
    RETURN v_result;
END
$$;

-- Take "points" from the member's open buckets for ledger entry
-- "entry": the bucket named "first" (if any) first, then oldest expiry
-- first; record each bucket taken from.  The account must be locked and
-- hold at least that many points.  Returns the points taken.
CREATE FUNCTION membership.loyalty_consume(organisation uuid, member uuid, entry bigint, points bigint,
                                           first bigint DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    v_result bigint;
BEGIN
    WITH open AS (
        SELECT b.ledger_id AS id, b.remaining,
               sum(b.remaining) OVER (ORDER BY b.ledger_id = first DESC NULLS LAST, b.expires_at, b.ledger_id)
                   - b.remaining
                   AS before
        FROM membership.loyalty_buckets b
        WHERE b.member_id = member AND b.organisation_id = organisation AND b.remaining > 0
    ), take AS (
        SELECT o.id, least(o.remaining, points - o.before) AS points
        FROM open o WHERE o.before < points
    ), used AS (
        UPDATE membership.loyalty_buckets b SET remaining = b.remaining - t.points
        FROM take t WHERE b.ledger_id = t.id
        RETURNING t.points
    ), allocated AS (
        INSERT INTO membership.loyalty_allocations (organisation_id, ledger_id, bucket_id, points)
        SELECT organisation, entry, t.id, t.points FROM take t
    )
    SELECT coalesce(sum(u.points), 0)::bigint INTO v_result
    FROM used u;
    RETURN v_result;
END
$$;

-- A refund: claw back what the earn (source_type, source_ref) gave, from
-- the open buckets (its own first).  The balance never goes below zero:
-- what cannot be taken back is recorded as the entry's shortfall.
-- Idempotent: a second call returns the first one's result.
CREATE FUNCTION membership.reverse_earn(organisation uuid, source_type text, source_ref text)
    RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_earn membership.loyalty_ledger;
    v_account membership.loyalty_accounts;
    v_back bigint;
    v_entry membership.loyalty_ledger;
BEGIN
    PERFORM membership.enter_organisation(organisation);
    IF source_type IS NULL OR source_ref IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'source_type and source_ref must not be null';
    END IF;
    SELECT * INTO v_earn FROM membership.loyalty_ledger l
    WHERE l.organisation_id = organisation
      AND l.idempotency_key = 'earn:' || reverse_earn.source_type || ':' || reverse_earn.source_ref;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'no_data_found',
            MESSAGE = format('no points were earned for %s "%s"', source_type, source_ref);
    END IF;
    v_account := membership.loyalty_lock_account(organisation, v_earn.member_id);

    SELECT * INTO v_entry FROM membership.loyalty_ledger l
    WHERE l.organisation_id = organisation
      AND l.idempotency_key = 'reverse:' || reverse_earn.source_type || ':' || reverse_earn.source_ref;
    IF NOT FOUND THEN
        v_back := least(v_earn.points, v_account.balance);
        INSERT INTO membership.loyalty_ledger (organisation_id, member_id, kind, points, balance_after,
                                               idempotency_key, source_type, source_ref, amount_cents, category,
                                               provider_id, shortfall, details, occurred_at)
        VALUES (organisation, v_earn.member_id, 'REVERSAL', -v_back, v_account.balance - v_back,
                'reverse:' || v_earn.source_type || ':' || v_earn.source_ref, v_earn.source_type, v_earn.source_ref,
                v_earn.amount_cents,
                v_earn.category, v_earn.provider_id, v_earn.points - v_back, jsonb_build_object('reverses', v_earn.id),
                v_earn.occurred_at)
        RETURNING * INTO v_entry;
        PERFORM membership.loyalty_consume(organisation, v_earn.member_id, v_entry.id, v_back,
                                           v_earn.id);
        UPDATE membership.loyalty_accounts a SET
            balance = a.balance - v_back,
            lifetime_points = greatest(a.lifetime_points - v_earn.points, 0),
            qualifying_points = CASE WHEN a.qualifying_year = date_part('year', v_earn.occurred_at AT TIME ZONE 'UTC')
                                     THEN greatest(a.qualifying_points - v_earn.points, 0)
                                     ELSE a.qualifying_points END
        WHERE a.member_id = v_earn.member_id AND a.organisation_id = organisation;
    END IF;
    RETURN jsonb_build_object('member_id', v_entry.member_id, 'earned', v_earn.points,
                              'reversed', -v_entry.points, 'shortfall', v_entry.shortfall,
                              'balance', v_entry.balance_after);
END
$$;
GRANT EXECUTE ON FUNCTION membership.reverse_earn(uuid, text, text) TO membership_platform_admin;
COMMENT ON FUNCTION membership.reverse_earn(uuid, text, text) IS
    'refund: claw back the points an earn gave (never below zero; the shortfall is recorded); idempotent';

-- What a redemption entry says, for callers.
CREATE FUNCTION membership.loyalty_redemption_result(entry membership.loyalty_ledger, replayed boolean)
    RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
#variable_conflict use_column
BEGIN
    RETURN (
        SELECT jsonb_strip_nulls(jsonb_build_object(
            'request_id', entry.details ->> 'request_id',
            'points', -entry.points,
            'balance', entry.balance_after,
            'discount_cents', (entry.details ->> 'discount_cents')::bigint,
            'option_id', entry.details ->> 'option_id',
            'reward_code', r.code,
            'value_cents', r.value_cents,
            'replayed', replayed))
        FROM (SELECT) dummy
        LEFT JOIN membership.loyalty_rewards r ON r.ledger_id = entry.id);
END
$$;

-- Redeem points: for a discount on an order (no option: order_value_cents
-- is needed) or for a redemption option (points default to its cost; a
-- reward code is issued).  At most the program's cap (50%) of the order's
-- value; buckets consumed oldest expiry first.  Idempotent on request_id:
-- a replay returns the first result and writes nothing; a replay of
-- another redemption raises.  "partner" is set by partner_redeem().
CREATE FUNCTION membership.redeem_points(organisation uuid, member uuid, points bigint, request_id text,
                                         order_value_cents bigint DEFAULT NULL, option_id uuid DEFAULT NULL,
                                         partner uuid DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_program membership.loyalty_programs;
    v_option membership.loyalty_options;
    v_account membership.loyalty_accounts;
    v_entry membership.loyalty_ledger;
    v_points bigint := points;
    v_value bigint;
    v_exchange numeric;
BEGIN
    PERFORM membership.enter_organisation(organisation);
    IF member IS NULL OR request_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'member and request_id must not be null';
    END IF;
    IF request_id = '' OR length(request_id) > 200 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'request_id must be 1 to 200 characters';
    END IF;
    IF option_id IS NOT NULL THEN
        SELECT * INTO v_option FROM membership.loyalty_options o
        WHERE o.id = option_id AND o.organisation_id = organisation AND o.active;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'no_data_found',
                MESSAGE = format('redemption option %s does not exist', option_id);
        END IF;
        v_points := coalesce(v_points, v_option.points_cost);
        IF v_points <> v_option.points_cost THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('option "%s" costs %s points, not %s', v_option.name, v_option.points_cost, v_points);
        END IF;
    END IF;
    IF v_points IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'points must not be null';
    END IF;
    IF v_points <= 0 OR v_points > 1000000000 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('points must be 1 to 1000000000, not %s', v_points);
    END IF;
    IF order_value_cents IS NULL AND option_id IS NULL AND partner IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'a redemption without an option needs the order value',
            HINT = 'Pass order_value_cents: points pay for at most part of an order.';
    END IF;
    IF order_value_cents <= 0 OR order_value_cents > 100000000000 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('order_value_cents must be 1 to 100000000000, not %s', order_value_cents);
    END IF;

    v_account := membership.loyalty_lock_account(organisation, member);
    IF v_account.member_id IS NULL THEN
        IF NOT EXISTS (SELECT FROM membership.members m WHERE m.id = member AND m.organisation_id = organisation) THEN
            RAISE EXCEPTION USING ERRCODE = 'no_data_found',
                MESSAGE = format('member %s does not exist in this organisation', member);
        END IF;
        PERFORM membership.loyalty_open_account(organisation, member);
        v_account := membership.loyalty_lock_account(organisation, member);
    END IF;

    -- a replay: the same request again (seen under the lock, so a
    -- concurrent twin has committed or not started)
    SELECT * INTO v_entry FROM membership.loyalty_ledger l
    WHERE l.organisation_id = organisation AND l.idempotency_key = 'redeem:' || request_id;
    IF FOUND THEN
        IF v_entry.member_id <> member OR -v_entry.points <> v_points
           OR (v_entry.details ->> 'option_id') IS DISTINCT FROM option_id::text
           OR (v_entry.details ->> 'order_value_cents')::bigint IS DISTINCT FROM order_value_cents THEN
            RAISE EXCEPTION USING ERRCODE = 'unique_violation',
                MESSAGE = format('request "%s" was already used for another redemption', request_id),
                HINT = 'A replay must repeat the original request; a new redemption needs a new request_id.';
        END IF;
        RETURN membership.loyalty_redemption_result(v_entry, true);
    END IF;

    SELECT * INTO v_program FROM membership.loyalty_programs p WHERE p.organisation_id = organisation;
    IF partner IS NOT NULL THEN
        SELECT lp.exchange_cents INTO v_exchange FROM membership.loyalty_partners lp
        WHERE lp.organisation_id = organisation AND lp.provider_id = partner AND lp.active;
    END IF;
    v_value := floor(v_points * coalesce(v_exchange, v_program.point_value_cents));
    IF order_value_cents IS NOT NULL AND v_value > order_value_cents * v_program.redemption_cap_pct / 100 THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation',
            MESSAGE = format('%s points are worth more than %s%% of the order', v_points, v_program.redemption_cap_pct),
            DETAIL = format('They are worth %s cents; the order is %s cents.', v_value, order_value_cents),
            HINT = format('Redeem at most %s points for this order.',
                          floor(order_value_cents * v_program.redemption_cap_pct / 100
                                / coalesce(v_exchange, v_program.point_value_cents)));
    END IF;
    IF v_account.balance < v_points THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation',
            MESSAGE = 'not enough points',
            DETAIL = format('The balance is %s points; %s were asked for.', v_account.balance, v_points);
    END IF;

    INSERT INTO membership.loyalty_ledger (organisation_id, member_id, kind, points, balance_after, idempotency_key,
                                           provider_id, details)
    VALUES (organisation, member, 'REDEEM', -v_points, v_account.balance - v_points, 'redeem:' || request_id,
            partner,
            jsonb_strip_nulls(jsonb_build_object('request_id', request_id, 'option_id', option_id,
                                                 'order_value_cents', order_value_cents,
                                                 'discount_cents', CASE WHEN option_id IS NULL THEN v_value END)))
    RETURNING * INTO v_entry;
    PERFORM membership.loyalty_consume(organisation, member, v_entry.id, v_points);
    UPDATE membership.loyalty_accounts a SET balance = a.balance - v_points, last_activity_at = greatest(a.last_activity_at, now())
    WHERE a.member_id = member AND a.organisation_id = organisation;
    IF option_id IS NOT NULL THEN
        INSERT INTO membership.loyalty_rewards (code, organisation_id, member_id, ledger_id, option_id, value_cents)
        VALUES ('LR-' || upper(substr(replace(gen_random_uuid()::text, '-', ''), 1, 16)), organisation, member,
                v_entry.id, option_id, v_option.value_cents);
    END IF;
    RETURN membership.loyalty_redemption_result(v_entry, false);
END
$$;
GRANT EXECUTE ON FUNCTION membership.redeem_points(uuid, uuid, bigint, text, bigint, uuid, uuid)
    TO membership_platform_admin;
COMMENT ON FUNCTION membership.redeem_points(uuid, uuid, bigint, text, bigint, uuid, uuid) IS
    'redeem points for a discount or an option, oldest-expiring first, capped; idempotent on request_id';

-- A manual correction by the platform: positive points open a bucket,
-- negative ones are taken from the open buckets (never below zero).
-- Idempotent on reference.
CREATE FUNCTION membership.adjust_points(organisation uuid, member uuid, points bigint, reference text,
                                         reason text)
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_account membership.loyalty_accounts;
    v_entry membership.loyalty_ledger;
BEGIN
    PERFORM membership.enter_organisation(organisation);
    IF member IS NULL OR points IS NULL OR reference IS NULL OR reason IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'member, points, reference and reason must not be null';
    END IF;
    IF points = 0 OR abs(points) > 1000000000 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('points must be non-zero and at most 1000000000 either way, not %s', points);
    END IF;
    IF reference = '' OR length(reference) > 200 OR btrim(reason) = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'reference must be 1 to 200 characters and reason not empty';
    END IF;
    PERFORM membership.loyalty_open_account(organisation, member);
    v_account := membership.loyalty_lock_account(organisation, member);
    SELECT * INTO v_entry FROM membership.loyalty_ledger l
    WHERE l.organisation_id = organisation AND l.idempotency_key = 'adjust:' || reference;
    IF FOUND THEN
        IF v_entry.member_id <> member OR v_entry.points <> points THEN
            RAISE EXCEPTION USING ERRCODE = 'unique_violation',
                MESSAGE = format('adjustment "%s" was already made with different parameters', reference);
        END IF;
        RETURN v_entry.points;
    END IF;
    IF v_account.balance + points < 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation', MESSAGE = 'not enough points',
            DETAIL = format('The balance is %s points.', v_account.balance);
    END IF;
    INSERT INTO membership.loyalty_ledger (organisation_id, member_id, kind, points, balance_after, idempotency_key,
                                           source_ref, details)
    VALUES (organisation, member, 'ADJUST', points, v_account.balance + points, 'adjust:' || reference, reference,
            jsonb_build_object('reason', reason))
    RETURNING * INTO v_entry;
    IF points > 0 THEN
        INSERT INTO membership.loyalty_buckets (organisation_id, member_id, ledger_id, points, remaining, earned_at,
                                                expires_at)
        SELECT organisation, member, v_entry.id, points, points, now(),
               current_date + make_interval(months => p.expiry_months)
        FROM membership.loyalty_programs p WHERE p.organisation_id = organisation;
    ELSE
        PERFORM membership.loyalty_consume(organisation, member, v_entry.id, -points);
    END IF;
    UPDATE membership.loyalty_accounts a SET balance = a.balance + points
    WHERE a.member_id = member AND a.organisation_id = organisation;
    RETURN points;
END
$$;
GRANT EXECUTE ON FUNCTION membership.adjust_points(uuid, uuid, bigint, text, text) TO membership_platform_admin;
