-- The ledger's API: members (points, history, redemption) and partners
-- (providers earning and redeeming with an organisation's program, with a
-- monthly statement), and the platform's monthly partner report.

-- A member's points: balance, tier, lifetime points and what expires in
-- the next 30, 60 and 90 days.  The tenant must be set.
CREATE FUNCTION membership.loyalty_summary(organisation uuid, member uuid, as_of date DEFAULT current_date)
    RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
#variable_conflict use_column
BEGIN
    RETURN (
        SELECT jsonb_build_object(
            'balance', coalesce(a.balance, 0),
            'tier', coalesce(a.tier, (SELECT t.tier FROM membership.loyalty_tiers t
                                      WHERE t.organisation_id = organisation ORDER BY t.threshold LIMIT 1), 'bronze'),
            'tier_expires_at', a.tier_expires_at,
            'lifetime_points', coalesce(a.lifetime_points, 0),
            'qualifying_points', coalesce(a.qualifying_points, 0),
            'downgrade_to', a.downgrade_to,
            'downgrade_at', a.downgrade_at,
            'expiry_model', coalesce(p.expiry_model, 'rolling'),
            'expiring_30_days', coalesce(x.d30, 0),
            'expiring_60_days', coalesce(x.d60, 0),
            'expiring_90_days', coalesce(x.d90, 0),
            'point_value_cents', coalesce(p.point_value_cents, 1))
        FROM (SELECT) one
        LEFT JOIN membership.loyalty_programs p ON p.organisation_id = organisation
        LEFT JOIN membership.loyalty_accounts a ON a.member_id = member AND a.organisation_id = organisation
        LEFT JOIN LATERAL (
            SELECT sum(b.remaining) FILTER (WHERE b.expires_at <= as_of + 30) AS d30,
                   sum(b.remaining) FILTER (WHERE b.expires_at <= as_of + 60) AS d60,
                   sum(b.remaining) FILTER (WHERE b.expires_at <= as_of + 90) AS d90
            FROM membership.loyalty_buckets b
            WHERE p.expiry_model = 'rolling' AND b.member_id = member AND b.organisation_id = organisation
              AND b.remaining > 0
            UNION ALL
            SELECT CASE WHEN d.expires <= as_of + 30 THEN a.balance END, CASE WHEN d.expires <= as_of + 60 THEN a.balance END,
                   CASE WHEN d.expires <= as_of + 90 THEN a.balance END
            FROM (SELECT ((a.last_activity_at AT TIME ZONE 'UTC')::date
                          + make_interval(months => p.expiry_months))::date AS expires) d
            WHERE p.expiry_model = 'inactivity'
        ) x ON true);
END
$$;

CREATE FUNCTION membership_api.points() RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member');
BEGIN
    RETURN membership.loyalty_summary(v_caller.organisation_id, v_caller.member_id);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.points() TO membership_member;
COMMENT ON FUNCTION membership_api.points() IS
    'the calling member''s points: balance, tier, lifetime points, points expiring in 30/60/90 days';

-- The calling member's ledger, newest first, max_rows at a time; pass the
-- last id seen as "before" for the next page.
CREATE FUNCTION membership_api.points_history(before bigint DEFAULT NULL, max_rows integer DEFAULT 50)
    RETURNS TABLE (id bigint, kind text, points bigint, balance_after bigint, source_type text, category text,
                   amount_cents bigint, partner text, reward_code text, occurred_at timestamptz,
                   recorded_at timestamptz)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member');
BEGIN
    IF max_rows IS NULL OR max_rows < 1 OR max_rows > 500 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'max_rows must be 1 to 500';
    END IF;
    RETURN QUERY
        SELECT l.id, l.kind, l.points, l.balance_after, l.source_type, l.category, l.amount_cents,
               pr.name, r.code, l.occurred_at, l.recorded_at
        FROM membership.loyalty_ledger l
        LEFT JOIN membership.providers pr ON pr.id = l.provider_id
        LEFT JOIN membership.loyalty_rewards r ON r.ledger_id = l.id
        WHERE l.member_id = v_caller.member_id AND l.organisation_id = v_caller.organisation_id
          AND (before IS NULL OR l.id < before)
        ORDER BY l.id DESC
        LIMIT max_rows;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.points_history(bigint, integer) TO membership_member;
COMMENT ON FUNCTION membership_api.points_history(bigint, integer) IS
    'the calling member''s point transactions, newest first, a page at a time';

-- What the calling member can redeem points for.
CREATE FUNCTION membership_api.redemption_options()
    RETURNS TABLE (id uuid, kind text, name text, points_cost bigint, value_cents bigint, partner text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member');
BEGIN
    RETURN QUERY
        SELECT o.id, o.kind, o.name, o.points_cost, o.value_cents, pr.name
        FROM membership.loyalty_options o LEFT JOIN membership.providers pr ON pr.id = o.provider_id
        WHERE o.organisation_id = v_caller.organisation_id AND o.active
        ORDER BY o.points_cost, o.name;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.redemption_options() TO membership_member;

-- The calling member redeems points (see membership.redeem_points).
CREATE FUNCTION membership_api.redeem(points bigint, request_id text, order_value_cents bigint DEFAULT NULL,
                                      option_id uuid DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member');
BEGIN
    IF request_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'request_id must not be null';
    END IF;
    IF request_id = '' OR length(request_id) > 150 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'request_id must be 1 to 150 characters';
    END IF;
    RETURN membership.redeem_points(v_caller.organisation_id, v_caller.member_id, points,
                                    'member:' || v_caller.member_id || ':' || request_id,
                                    order_value_cents, option_id)
           || jsonb_build_object('request_id', request_id);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.redeem(bigint, text, bigint, uuid) TO membership_member;
COMMENT ON FUNCTION membership_api.redeem(bigint, text, bigint, uuid) IS
    'the calling member redeems points for a discount or an option; idempotent on request_id';

-- A partner's transaction id: what partner_earn and partner_redeem are
-- idempotent on.
CREATE FUNCTION membership.check_partner_transaction(transaction_id text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF transaction_id IS NULL OR transaction_id = '' OR length(transaction_id) > 160 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'transaction_id must be 1 to 160 characters';
    END IF;
END
$$;

-- The partner calling with its key, and the member it names.  Raises
-- PT403 unless the provider is an active partner of the key's
-- organisation, PT404 for a member who is not a current member of it.
CREATE FUNCTION membership.loyalty_partner_call(api_key text, email text, user_id text,
                                                OUT caller membership.caller, OUT member uuid)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    caller := membership.authenticate(api_key, 'provider');
    IF NOT EXISTS (SELECT FROM membership.loyalty_partners lp
                   WHERE lp.organisation_id = caller.organisation_id AND lp.provider_id = caller.provider_id
                     AND lp.active) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT403',
            MESSAGE = 'this provider is not a partner of the organisation''s loyalty program';
    END IF;
    IF (email IS NULL) = (user_id IS NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'give the member''s email or user_id, one of them';
    END IF;
    IF email IS NOT NULL AND NOT membership.is_valid_email(email) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid email address "%s"', left(email, 200));
    END IF;
    IF email IS NOT NULL THEN
        SELECT m.id INTO member FROM membership.members m
        WHERE m.organisation_id = caller.organisation_id
          AND m.email_hash = membership.email_hash(membership.normalize_email(loyalty_partner_call.email)) AND m.removed_at IS NULL;
    ELSE
        SELECT m.id INTO member FROM membership.members m
        WHERE m.organisation_id = caller.organisation_id AND m.external_id = btrim(loyalty_partner_call.user_id) AND m.removed_at IS NULL;
    END IF;
    IF member IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = 'no such member';
    END IF;
END
$$;

-- A partner awards points for a sale: at its earn rate, with the
-- program's rules and the member's tier multiplier.  Idempotent on the
-- partner's transaction id.
CREATE FUNCTION membership_api.partner_earn(amount_cents bigint, transaction_id text, email text DEFAULT NULL,
                                            user_id text DEFAULT NULL, category text DEFAULT NULL,
                                            occurred_at timestamptz DEFAULT NULL, api_key text DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_call record := membership.loyalty_partner_call(api_key, email, user_id);
    v_points bigint;
BEGIN
    PERFORM membership.check_partner_transaction(transaction_id);
    BEGIN
        v_points := membership.earn_points((v_call.caller).organisation_id, v_call.member, amount_cents, 'partner',
                                           (v_call.caller).provider_id || ':' || transaction_id, category,
                                           occurred_at, (v_call.caller).provider_id);
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION USING ERRCODE = 'PT409',
            MESSAGE = format('transaction "%s" was already reported with different parameters', transaction_id);
    END;
    RETURN jsonb_build_object('transaction_id', transaction_id, 'points', v_points);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.partner_earn(bigint, text, text, text, text, timestamptz, text)
    TO membership_provider;
COMMENT ON FUNCTION membership_api.partner_earn(bigint, text, text, text, text, timestamptz, text) IS
    'partners: award points for a sale to a member; idempotent on transaction_id';

-- A partner asks what a member's points are worth with it.
CREATE FUNCTION membership_api.partner_balance(email text DEFAULT NULL, user_id text DEFAULT NULL,
                                               api_key text DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_call record := membership.loyalty_partner_call(api_key, email, user_id);
BEGIN
    RETURN (SELECT jsonb_build_object('balance', coalesce(a.balance, 0),
                                      'value_cents', floor(coalesce(a.balance, 0) * lp.exchange_cents)::bigint)
            FROM membership.loyalty_partners lp
            LEFT JOIN membership.loyalty_accounts a ON a.member_id = v_call.member
                                                   AND a.organisation_id = lp.organisation_id
            WHERE lp.organisation_id = (v_call.caller).organisation_id
              AND lp.provider_id = (v_call.caller).provider_id);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.partner_balance(text, text, text) TO membership_provider;
COMMENT ON FUNCTION membership_api.partner_balance(text, text, text) IS
    'partners: a member''s balance and what it is worth at the partner''s exchange rate';

-- A partner takes points in payment, at its exchange rate.  Idempotent
-- on the partner's transaction id.
CREATE FUNCTION membership_api.partner_redeem(points bigint, transaction_id text, email text DEFAULT NULL,
                                              user_id text DEFAULT NULL, api_key text DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_call record := membership.loyalty_partner_call(api_key, email, user_id);
    v_result jsonb;
BEGIN
    PERFORM membership.check_partner_transaction(transaction_id);
    BEGIN
        v_result := membership.redeem_points((v_call.caller).organisation_id, v_call.member, points,
                                             'partner:' || (v_call.caller).provider_id || ':' || transaction_id,
                                             NULL, NULL, (v_call.caller).provider_id);
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION USING ERRCODE = 'PT409',
            MESSAGE = format('transaction "%s" was already used for another redemption', transaction_id);
    END;
    RETURN jsonb_build_object('transaction_id', transaction_id, 'points', v_result -> 'points',
                              'value_cents', v_result -> 'discount_cents',
                              'replayed', v_result -> 'replayed');
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.partner_redeem(bigint, text, text, text, text) TO membership_provider;
COMMENT ON FUNCTION membership_api.partner_redeem(bigint, text, text, text, text) IS
    'partners: take a member''s points in payment at the exchange rate; idempotent on transaction_id';

-- Per partner and month: points earned and redeemed through it, their
-- value, and refunds.  The tenant must be set.
CREATE FUNCTION membership.loyalty_partner_month(organisation uuid, month date, only_partner uuid DEFAULT NULL)
    RETURNS TABLE (provider_id uuid, partner text, period date, earn_transactions bigint, earned_points bigint,
                   sales_cents bigint, redeem_transactions bigint, redeemed_points bigint,
                   redeemed_value_cents bigint, reversed_points bigint)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
        SELECT lp.provider_id, pr.slug, date_trunc('month', loyalty_partner_month.month)::date,
               count(l.id) FILTER (WHERE l.kind IN ('EARN', 'BONUS')),
               coalesce(sum(l.points) FILTER (WHERE l.kind IN ('EARN', 'BONUS')), 0)::bigint,
               coalesce(sum(l.amount_cents) FILTER (WHERE l.kind IN ('EARN', 'BONUS')), 0)::bigint,
               count(l.id) FILTER (WHERE l.kind = 'REDEEM'),
               coalesce(-sum(l.points) FILTER (WHERE l.kind = 'REDEEM'), 0)::bigint,
               coalesce(sum((l.details ->> 'discount_cents')::bigint) FILTER (WHERE l.kind = 'REDEEM'), 0)::bigint,
               coalesce(-sum(l.points) FILTER (WHERE l.kind = 'REVERSAL'), 0)::bigint
        FROM membership.loyalty_partners lp
        JOIN membership.providers pr ON pr.id = lp.provider_id
        LEFT JOIN membership.loyalty_ledger l
               ON l.provider_id = lp.provider_id AND l.organisation_id = lp.organisation_id
              AND l.recorded_at >= date_trunc('month', loyalty_partner_month.month)
              AND l.recorded_at < date_trunc('month', loyalty_partner_month.month) + interval '1 month'
        WHERE lp.organisation_id = organisation AND (only_partner IS NULL OR lp.provider_id = only_partner)
        GROUP BY lp.provider_id, pr.slug
        ORDER BY pr.slug;
END
$$;

-- The platform's monthly reconciliation report of an organisation's
-- partners.
CREATE FUNCTION membership.partner_report(organisation uuid, month date)
    RETURNS TABLE (provider_id uuid, partner text, period date, earn_transactions bigint, earned_points bigint,
                   sales_cents bigint, redeem_transactions bigint, redeemed_points bigint,
                   redeemed_value_cents bigint, reversed_points bigint)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    PERFORM membership.enter_organisation(organisation);
    IF month IS NULL OR NOT isfinite(month) THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'month must be a date';
    END IF;
    RETURN QUERY SELECT * FROM membership.loyalty_partner_month(organisation, month);
END
$$;
GRANT EXECUTE ON FUNCTION membership.partner_report(uuid, date) TO membership_platform_admin;
COMMENT ON FUNCTION membership.partner_report(uuid, date) IS
    'monthly reconciliation of each partner of the organisation: points earned, redeemed, their value';

-- The same statement for the partner calling, its own line only.
CREATE FUNCTION membership_api.partner_statement(month date, api_key text DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(api_key, 'provider');
BEGIN
    IF month IS NULL OR NOT isfinite(month) THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'month must be a date';
    END IF;
    RETURN (SELECT to_jsonb(r) - 'provider_id'
            FROM membership.loyalty_partner_month(v_caller.organisation_id, month, v_caller.provider_id) r);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.partner_statement(date, text) TO membership_provider;
COMMENT ON FUNCTION membership_api.partner_statement(date, text) IS
    'partners: your monthly statement with the key''s organisation (NULL if you are not its partner)';
