-- What members see of the catalogue, and how they steer their feed:
-- bookmarking a category makes it fully relevant to them (with the
-- "personalisation" consent), hiding one takes its benefits out of their
-- feed (always: hiding is an instruction, not a profile).

CREATE TABLE membership.category_preferences (
    organisation_id uuid NOT NULL,
    member_id       uuid NOT NULL,
    category        text NOT NULL REFERENCES membership.benefit_categories (category) ON DELETE CASCADE,
    preference      text NOT NULL CHECK (preference IN ('bookmarked', 'hidden')),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (member_id, category),
    FOREIGN KEY (member_id, organisation_id)
        REFERENCES membership.members (id, organisation_id) ON DELETE CASCADE
);
CREATE INDEX category_preferences_organisation_idx ON membership.category_preferences (organisation_id, member_id);
COMMENT ON TABLE membership.category_preferences IS
    'tenant: benefit categories each member has bookmarked or hidden';
SELECT membership.isolate_table('membership.category_preferences');

-- The calling member's preferences as {"category": "bookmarked" | "hidden"}.
CREATE FUNCTION membership.preferences_of(member uuid) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT coalesce(jsonb_object_agg(p.category, p.preference ORDER BY p.category), '{}')
    FROM membership.category_preferences p WHERE p.member_id = preferences_of.member
$$;

-- Bookmark or hide a category, or (preference NULL) neither.  The member's
-- feed is scored again at once.  Returns all the member's preferences.
CREATE FUNCTION membership_api.set_category_preference(category text, preference text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member');
    v_member membership.members := membership.require_active_member();
BEGIN
    PERFORM membership.check_category(category);
    IF preference IS NOT NULL AND preference NOT IN ('bookmarked', 'hidden') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown preference "%s"', preference),
            HINT = 'Use "bookmarked", "hidden", or null for neither.';
    END IF;
    IF preference IS NULL THEN
        DELETE FROM membership.category_preferences p
        WHERE p.member_id = v_member.id AND p.category = set_category_preference.category;
    ELSE
        INSERT INTO membership.category_preferences AS p (organisation_id, member_id, category, preference)
        VALUES (v_caller.organisation_id, v_member.id, set_category_preference.category,
                set_category_preference.preference)
        ON CONFLICT ON CONSTRAINT category_preferences_pkey
        DO UPDATE SET preference = EXCLUDED.preference, updated_at = now()
        WHERE p.preference <> EXCLUDED.preference;
    END IF;
    PERFORM membership.refresh_feed(v_member.id);
    RETURN membership.preferences_of(v_member.id);
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.set_category_preference(text, text) TO membership_member;
COMMENT ON FUNCTION membership_api.set_category_preference(text, text) IS
    'members: bookmark or hide a benefit category (null clears); the feed follows at once';

-- The categories, with how many benefits the caller's organisation offers
-- in each and (for a member) the member's preference.
CREATE FUNCTION membership_api.benefit_categories()
    RETURNS TABLE (category text, name text, benefits bigint, preference text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member', 'org_admin');
BEGIN
    RETURN QUERY
        SELECT c.category, c.name,
               (SELECT count(*) FROM membership.benefit_offers o
                JOIN membership.benefits b ON b.id = o.benefit_id
                WHERE o.organisation_id = v_caller.organisation_id AND b.category = c.category AND b.active),
               (SELECT p.preference FROM membership.category_preferences p
                WHERE p.member_id = v_caller.member_id AND p.category = c.category)
        FROM membership.benefit_categories c
        ORDER BY c.name, c.category;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.benefit_categories() TO membership_member, membership_org_admin;
COMMENT ON FUNCTION membership_api.benefit_categories() IS
    'members and organisation administrators: benefit categories, with the member''s preference';

-- Every active benefit the caller's organisation offers, optionally of one
-- category: the catalogue to browse, beside the personalised feed.
CREATE FUNCTION membership_api.benefits(of_category text DEFAULT NULL)
    RETURNS TABLE (benefit_id integer, title text, description text, category text, provider text,
                   url text, added_on date, promotion_weight double precision, preference text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'member', 'org_admin');
BEGIN
    IF of_category IS NOT NULL THEN
        PERFORM membership.check_category(of_category);
    END IF;
    RETURN QUERY
        SELECT b.id, b.title, b.description, b.category, p.name, b.url, b.added_on, o.promotion_weight,
               (SELECT cp.preference FROM membership.category_preferences cp
                WHERE cp.member_id = v_caller.member_id AND cp.category = b.category)
        FROM membership.benefit_offers o
        JOIN membership.benefits b ON b.id = o.benefit_id
        JOIN membership.providers p ON p.id = b.provider_id
        WHERE o.organisation_id = v_caller.organisation_id AND b.active
          AND (of_category IS NULL OR b.category = of_category)
        ORDER BY b.category, b.title, b.id;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.benefits(text) TO membership_member, membership_org_admin;
COMMENT ON FUNCTION membership_api.benefits(text) IS
    'members and organisation administrators: the active benefits the organisation offers';
