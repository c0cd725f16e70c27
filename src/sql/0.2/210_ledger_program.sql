-- Loyalty program settings, tiers, earn rules, redemption options,
-- partners, and the one seam through which every loyalty notice goes.

-- Create the organisation's program with the defaults of DESIGN.md 4.3 if
-- it has none yet: 1 point per 100 cents, Bronze 0 / Silver 5,000 / Gold
-- 15,000 / Platinum 50,000 (x1, x1.5, x2, x3), rolling 12-month expiry,
-- 100 points = 1.00, 50% cap, 30 days' grace.  The tenant must be set.
CREATE FUNCTION membership.loyalty_ensure_program(organisation uuid) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    INSERT INTO membership.loyalty_programs (organisation_id) VALUES (organisation)
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        INSERT INTO membership.loyalty_tiers (organisation_id, tier, threshold, multiplier, perks)
        VALUES (organisation, 'bronze', 0, 1, '[]'),
               (organisation, 'silver', 5000, 1.5, '["priority support"]'),
               (organisation, 'gold', 15000, 2, '["priority support", "free shipping"]'),
               (organisation, 'platinum', 50000, 3, '["priority support", "free shipping", "lounge access"]');
    END IF;
END
$$;

-- The program of an organisation as jsonb, tiers included.
CREATE FUNCTION membership.loyalty_program(organisation uuid) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    PERFORM membership.enter_organisation(organisation);
    PERFORM membership.loyalty_ensure_program(organisation);
    RETURN (SELECT to_jsonb(p) - 'organisation_id' - 'updated_at'
                   || jsonb_build_object('tiers',
                          (SELECT jsonb_agg(jsonb_build_object('tier', t.tier, 'threshold', t.threshold,
                                                               'multiplier', t.multiplier, 'perks', t.perks)
                                            ORDER BY t.threshold)
                           FROM membership.loyalty_tiers t WHERE t.organisation_id = p.organisation_id))
            FROM membership.loyalty_programs p WHERE p.organisation_id = organisation);
END
$$;
GRANT EXECUTE ON FUNCTION membership.loyalty_program(uuid) TO membership_platform_admin;

-- Change program settings: every key of "settings" that is given replaces
-- the current value (points_per_unit, unit_cents, expiry_model,
-- expiry_months, point_value_cents, redemption_cap_pct,
-- downgrade_grace_days).  Returns the program.
CREATE FUNCTION membership.set_loyalty_program(organisation uuid, settings jsonb) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_unknown text;
BEGIN
    PERFORM membership.enter_organisation(organisation);
    IF settings IS NULL OR jsonb_typeof(settings) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'settings must be a JSON object';
    END IF;
    SELECT string_agg(k, ', ' ORDER BY k) INTO v_unknown FROM jsonb_object_keys(settings) k
    WHERE k NOT IN ('points_per_unit', 'unit_cents', 'expiry_model', 'expiry_months', 'point_value_cents',
                    'redemption_cap_pct', 'downgrade_grace_days');
    IF v_unknown IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown loyalty program settings: %s', v_unknown),
            HINT = 'Settings are points_per_unit, unit_cents, expiry_model, expiry_months, point_value_cents, redemption_cap_pct and downgrade_grace_days.';
    END IF;
    PERFORM membership.loyalty_ensure_program(organisation);
    BEGIN
        UPDATE membership.loyalty_programs p SET
            points_per_unit = coalesce((settings ->> 'points_per_unit')::numeric, p.points_per_unit),
            unit_cents = coalesce((settings ->> 'unit_cents')::integer, p.unit_cents),
            expiry_model = coalesce(settings ->> 'expiry_model', p.expiry_model),
            expiry_months = coalesce((settings ->> 'expiry_months')::integer, p.expiry_months),
            point_value_cents = coalesce((settings ->> 'point_value_cents')::numeric, p.point_value_cents),
            redemption_cap_pct = coalesce((settings ->> 'redemption_cap_pct')::numeric, p.redemption_cap_pct),
            downgrade_grace_days = coalesce((settings ->> 'downgrade_grace_days')::integer, p.downgrade_grace_days),
            updated_at = now()
        WHERE p.organisation_id = organisation;
    EXCEPTION WHEN check_violation OR invalid_text_representation OR numeric_value_out_of_range THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'invalid loyalty program settings',
            DETAIL = SQLERRM,
            HINT = 'expiry_model is rolling or inactivity; numbers must be positive.';
    END;
    RETURN membership.loyalty_program(organisation);
END
$$;
GRANT EXECUTE ON FUNCTION membership.set_loyalty_program(uuid, jsonb) TO membership_platform_admin;

-- Add or change a tier.  Accounts in a tier keep it until evaluation.
CREATE FUNCTION membership.set_loyalty_tier(organisation uuid, tier text, threshold bigint,
                                            multiplier numeric, perks jsonb DEFAULT '[]')
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    PERFORM membership.enter_organisation(organisation);
    IF tier IS NULL OR threshold IS NULL OR multiplier IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'tier, threshold and multiplier must not be null';
    END IF;
    PERFORM membership.loyalty_ensure_program(organisation);
    INSERT INTO membership.loyalty_tiers AS t (organisation_id, tier, threshold, multiplier, perks)
    VALUES (organisation, set_loyalty_tier.tier, set_loyalty_tier.threshold, set_loyalty_tier.multiplier,
            coalesce(set_loyalty_tier.perks, '[]'))
    ON CONFLICT ON CONSTRAINT loyalty_tiers_pkey
    DO UPDATE SET threshold = EXCLUDED.threshold, multiplier = EXCLUDED.multiplier, perks = EXCLUDED.perks;
EXCEPTION WHEN check_violation OR unique_violation THEN
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
        MESSAGE = format('invalid tier "%s"', tier),
        DETAIL = SQLERRM,
        HINT = 'Tier names are lower-case identifiers; thresholds are distinct and not negative; multipliers are positive; perks is a JSON array.';
END
$$;
GRANT EXECUTE ON FUNCTION membership.set_loyalty_tier(uuid, text, bigint, numeric, jsonb) TO membership_platform_admin;

-- Add an earn rule; returns its id.  It applies from the next earn.
CREATE FUNCTION membership.add_earn_rule(organisation uuid, name text, kind text,
                                         category text DEFAULT NULL, multiplier numeric DEFAULT NULL,
                                         bonus_points bigint DEFAULT NULL, min_amount_cents bigint DEFAULT NULL,
                                         priority integer DEFAULT 0, valid_from timestamptz DEFAULT NULL,
                                         valid_until timestamptz DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_id bigint;
BEGIN
    PERFORM membership.enter_organisation(organisation);
    IF name IS NULL OR kind IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'rule name and kind must not be null';
    END IF;
    IF kind NOT IN ('category_multiplier', 'fixed_bonus', 'order_threshold', 'first_purchase',
                    'signup', 'review', 'referral') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown earn rule kind "%s"', kind),
            HINT = 'Kinds are category_multiplier, fixed_bonus, order_threshold, first_purchase, signup, review and referral.';
    END IF;
    IF kind = 'category_multiplier' AND (category IS NULL OR multiplier IS NULL OR bonus_points IS NOT NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a category_multiplier rule needs a category and a multiplier, and no bonus_points';
    END IF;
    IF kind <> 'category_multiplier' AND (bonus_points IS NULL OR multiplier IS NOT NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('a %s rule needs bonus_points and no multiplier', kind);
    END IF;
    IF (kind = 'order_threshold') <> (min_amount_cents IS NOT NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'min_amount_cents belongs to order_threshold rules, and they need it';
    END IF;
    PERFORM membership.loyalty_ensure_program(organisation);
    INSERT INTO membership.loyalty_earn_rules (organisation_id, name, kind, category, multiplier, bonus_points,
                                               min_amount_cents, priority, valid_from, valid_until)
    VALUES (organisation, btrim(add_earn_rule.name), add_earn_rule.kind, add_earn_rule.category,
            add_earn_rule.multiplier, add_earn_rule.bonus_points, add_earn_rule.min_amount_cents,
            coalesce(add_earn_rule.priority, 0), add_earn_rule.valid_from, add_earn_rule.valid_until)
    RETURNING id INTO v_id;
    RETURN v_id;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
        MESSAGE = 'invalid earn rule',
        DETAIL = SQLERRM,
        HINT = 'Multipliers and bonus points are positive, valid_until is after valid_from.';
END
$$;
GRANT EXECUTE ON FUNCTION membership.add_earn_rule(uuid, text, text, text, numeric, bigint, bigint, integer,
                                                   timestamptz, timestamptz) TO membership_platform_admin;

-- Switch a rule on or off; true if the rule exists.
CREATE FUNCTION membership.set_earn_rule_active(organisation uuid, rule bigint, active boolean) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    PERFORM membership.enter_organisation(organisation);
    IF rule IS NULL OR active IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'rule and active must not be null';
    END IF;
    UPDATE membership.loyalty_earn_rules r SET active = set_earn_rule_active.active
    WHERE r.id = rule AND r.organisation_id = organisation;
    RETURN FOUND;
END
$$;
GRANT EXECUTE ON FUNCTION membership.set_earn_rule_active(uuid, bigint, boolean) TO membership_platform_admin;

-- Add a redemption option; returns its id.  A partner_reward names the
-- partner's provider slug.
CREATE FUNCTION membership.add_redemption_option(organisation uuid, kind text, name text, points_cost bigint,
                                                 value_cents bigint, partner text DEFAULT NULL)
    RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_provider uuid;
    v_id uuid;
BEGIN
    PERFORM membership.enter_organisation(organisation);
    IF kind IS NULL OR name IS NULL OR points_cost IS NULL OR value_cents IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'kind, name, points_cost and value_cents must not be null';
    END IF;
    IF kind NOT IN ('discount', 'free_item', 'gift_card', 'partner_reward') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown redemption option kind "%s"', kind),
            HINT = 'Kinds are discount, free_item, gift_card and partner_reward.';
    END IF;
    IF (kind = 'partner_reward') <> (partner IS NOT NULL) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'a partner_reward names its partner, and only it does';
    END IF;
    IF partner IS NOT NULL THEN
        SELECT p.id INTO v_provider FROM membership.providers p WHERE p.slug = partner;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('provider "%s" does not exist', partner);
        END IF;
    END IF;
    PERFORM membership.loyalty_ensure_program(organisation);
    INSERT INTO membership.loyalty_options (organisation_id, kind, name, points_cost, value_cents, provider_id)
    VALUES (organisation, add_redemption_option.kind, btrim(add_redemption_option.name),
            add_redemption_option.points_cost, add_redemption_option.value_cents, v_provider)
    RETURNING id INTO v_id;
    RETURN v_id;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
        MESSAGE = 'invalid redemption option',
        DETAIL = SQLERRM,
        HINT = 'points_cost is 1 to 100,000,000; value_cents is not negative; the name is 1 to 200 characters.';
END
$$;
GRANT EXECUTE ON FUNCTION membership.add_redemption_option(uuid, text, text, bigint, bigint, text)
    TO membership_platform_admin;

-- Make a provider a partner of the organisation's program (or change its
-- rates): it awards points_per_unit points per unit_cents of its sales,
-- and a point redeemed with it is worth exchange_cents.
CREATE FUNCTION membership.set_loyalty_partner(organisation uuid, partner text, points_per_unit numeric,
                                               exchange_cents numeric, unit_cents integer DEFAULT 100,
                                               active boolean DEFAULT true)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_provider uuid;
BEGIN
    PERFORM membership.enter_organisation(organisation);
    IF partner IS NULL OR points_per_unit IS NULL OR exchange_cents IS NULL OR unit_cents IS NULL
       OR active IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'partner, points_per_unit, exchange_cents, unit_cents and active must not be null';
    END IF;
    SELECT p.id INTO v_provider FROM membership.providers p WHERE p.slug = partner;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('provider "%s" does not exist', partner);
    END IF;
    PERFORM membership.loyalty_ensure_program(organisation);
    INSERT INTO membership.loyalty_partners AS lp (organisation_id, provider_id, points_per_unit, unit_cents,
                                                   exchange_cents, active)
    VALUES (organisation, v_provider, set_loyalty_partner.points_per_unit, set_loyalty_partner.unit_cents,
            set_loyalty_partner.exchange_cents, set_loyalty_partner.active)
    ON CONFLICT ON CONSTRAINT loyalty_partners_pkey
    DO UPDATE SET points_per_unit = EXCLUDED.points_per_unit, unit_cents = EXCLUDED.unit_cents,
                  exchange_cents = EXCLUDED.exchange_cents, active = EXCLUDED.active;
EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
        MESSAGE = 'invalid partner rates',
        DETAIL = SQLERRM,
        HINT = 'points_per_unit is above 0 and at most 1000; exchange_cents and unit_cents are positive.';
END
$$;
GRANT EXECUTE ON FUNCTION membership.set_loyalty_partner(uuid, text, numeric, numeric, integer, boolean)
    TO membership_platform_admin;

-- The one seam for loyalty notices to members: expiry reminders, tier
-- upgrades, downgrade notices.  Records the notice once per member, kind
-- and subject (a rerun records nothing new); true if it was new.  At merge
-- this is where the notification outbox is fed.  The tenant must be set.
CREATE FUNCTION membership.loyalty_notice(organisation uuid, member uuid, kind text, title text, body text,
                                          data jsonb DEFAULT '{}')
    RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF data ->> 'subject' IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'a loyalty notice needs a subject in its data';
    END IF;
    INSERT INTO membership.loyalty_notices (organisation_id, member_id, kind, subject, title, body, data)
    VALUES (organisation, member, loyalty_notice.kind, loyalty_notice.data ->> 'subject', loyalty_notice.title,
            loyalty_notice.body, coalesce(loyalty_notice.data, '{}'))
    ON CONFLICT ON CONSTRAINT loyalty_notices_member_id_kind_subject_key DO NOTHING;
    RETURN FOUND;
END
$$;
