-- Reports for the organisation portal, and platform-wide aggregates.
--
-- An organisation sees counts about its own members and the use of the
-- benefits it offers.  The platform sees counts per benefit across
-- organisations: no member, no member id, nothing per member.
-- Notification delivery statistics come with the notifications subsystem.

-- The months from "from_month" to "to_month" (any day in them), checked:
-- by default the last twelve, this one included.
CREATE FUNCTION membership.report_months(from_month date, to_month date,
                                         OUT first_month date, OUT last_month date)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    last_month := date_trunc('month', coalesce(to_month, current_date))::date;
    first_month := date_trunc('month', coalesce(from_month, last_month - interval '11 months'))::date;
    IF NOT isfinite(first_month) OR NOT isfinite(last_month) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'report months must be finite dates';
    END IF;
    IF first_month > last_month THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('from_month %s is after to_month %s',
                             to_char(first_month, 'YYYY-MM'), to_char(last_month, 'YYYY-MM'));
    END IF;
    IF last_month >= first_month + interval '36 months' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a report covers at most 36 months';
    END IF;
END
$$;

-- Uses of each benefit per month: all uses, those kept with a member (who
-- allowed tracking), and how many distinct members those were.
CREATE FUNCTION membership_api.benefit_usage_report(from_month date DEFAULT NULL, to_month date DEFAULT NULL,
                                                    api_key text DEFAULT NULL)
    RETURNS TABLE (month date, benefit_id integer, title text, provider text, category text,
                   uses bigint, tracked_uses bigint, tracked_members bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(api_key, 'org_admin', 'organisation');
    v_months record := membership.report_months(from_month, to_month);
BEGIN
    RETURN QUERY
        SELECT date_trunc('month', u.used_at)::date, b.id, b.title, p.name, b.category,
               count(*), count(u.member_id), count(DISTINCT u.member_id)
        FROM membership.benefit_usage u
        JOIN membership.benefits b ON b.id = u.benefit_id
        JOIN membership.providers p ON p.id = b.provider_id
        WHERE u.organisation_id = v_caller.organisation_id
          AND u.used_at >= v_months.first_month
          AND u.used_at < v_months.last_month + interval '1 month'
        GROUP BY 1, b.id, b.title, p.name, b.category
        ORDER BY 1, b.id;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.benefit_usage_report(date, date, text)
    TO membership_org_admin, membership_provider;
COMMENT ON FUNCTION membership_api.benefit_usage_report(date, date, text) IS
    'organisations: uses of each benefit per month (default: the last twelve months)';

-- The organisation's current members per membership tier: by status, new
-- in the last 30 days, using benefits in the last 30 days (as far as
-- members allow tracking), and with a personalised feed.
CREATE FUNCTION membership_api.active_members_report(api_key text DEFAULT NULL)
    RETURNS TABLE (membership_tier text, members bigint, active bigint, inactive bigint, suspended bigint,
                   lapsed bigint, joined_last_30_days bigint, using_benefits_last_30_days bigint,
                   personalised bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(api_key, 'org_admin', 'organisation');
BEGIN
    RETURN QUERY
        SELECT m.membership_tier, count(*),
               count(*) FILTER (WHERE m.status = 'active'),
               count(*) FILTER (WHERE m.status = 'inactive'),
               count(*) FILTER (WHERE m.status = 'suspended'),
               count(*) FILTER (WHERE m.status = 'lapsed'),
               count(*) FILTER (WHERE m.created_at >= now() - interval '30 days'),
               count(*) FILTER (WHERE m.id IN (SELECT u.member_id FROM membership.benefit_usage u
                                               WHERE u.organisation_id = v_caller.organisation_id
                                                 AND u.used_at >= now() - interval '30 days')),
               count(*) FILTER (WHERE m.status = 'active' AND membership.has_consent(m.id, 'personalisation'))
        FROM membership.members m
        WHERE m.organisation_id = v_caller.organisation_id AND m.removed_at IS NULL
        GROUP BY m.membership_tier
        ORDER BY m.membership_tier;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.active_members_report(text) TO membership_org_admin, membership_provider;
COMMENT ON FUNCTION membership_api.active_members_report(text) IS
    'organisations: current members per tier, by status, with recent joiners and benefit users';

-- Platform-wide: uses of each benefit per month across all organisations,
-- and in how many organisations.  Counts only.
CREATE FUNCTION membership.platform_usage_report(from_month date DEFAULT NULL, to_month date DEFAULT NULL)
    RETURNS TABLE (month date, benefit_id integer, title text, provider text, category text,
                   uses bigint, organisations bigint)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_months record := membership.report_months(from_month, to_month);
    v_org uuid;
BEGIN
    CREATE TEMPORARY TABLE IF NOT EXISTS membership_platform_usage
        (month date, benefit_id integer, uses bigint) ON COMMIT DROP;
    TRUNCATE pg_temp.membership_platform_usage;
    FOR v_org IN SELECT membership.all_organisations() LOOP
        PERFORM membership.set_tenant(v_org);
        INSERT INTO pg_temp.membership_platform_usage
        SELECT date_trunc('month', u.used_at)::date, u.benefit_id, count(*)
        FROM membership.benefit_usage u
        WHERE u.organisation_id = v_org
          AND u.used_at >= v_months.first_month
          AND u.used_at < v_months.last_month + interval '1 month'
        GROUP BY 1, 2;
    END LOOP;
    PERFORM membership.set_tenant(NULL);
    RETURN QUERY
        SELECT t.month, b.id, b.title, p.name, b.category, sum(t.uses)::bigint, count(*)
        FROM pg_temp.membership_platform_usage t
        JOIN membership.benefits b ON b.id = t.benefit_id
        JOIN membership.providers p ON p.id = b.provider_id
        GROUP BY t.month, b.id, b.title, p.name, b.category
        ORDER BY t.month, b.id;
END
$$;
GRANT EXECUTE ON FUNCTION membership.platform_usage_report(date, date) TO membership_platform_admin;
COMMENT ON FUNCTION membership.platform_usage_report(date, date) IS
    'platform: uses of each benefit per month across organisations (counts only)';
