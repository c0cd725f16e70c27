-- The benefit catalogue: what providers offer, which organisations offer it
-- to their members and how strongly they promote it, and how relevant each
-- category is to each profession.
--
--   membership.benefit_categories  platform: the categories benefits fall in
--   membership.benefits            platform: the catalogue (about 150)
--   membership.category_relevance  platform: profession -> category relevance
--   membership.benefit_offers      tenant: what an organisation offers, with
--                                  its promotion weight
--
-- Scores and their terms are all in [0, 1] (DESIGN.md 4.5).

CREATE TABLE membership.benefit_categories (
    category    text PRIMARY KEY CHECK (category ~ '^[a-z][a-z0-9_]{0,31}$'),
    name        text NOT NULL CHECK (pg_catalog.btrim(name) <> '' AND pg_catalog.length(name) <= 100)
);
COMMENT ON TABLE membership.benefit_categories IS
    'platform: benefit categories (travel, insurance, ...), which members may bookmark or hide';
SELECT membership.isolate_table('membership.benefit_categories', NULL);

CREATE TABLE membership.benefits (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider_id uuid NOT NULL REFERENCES membership.providers (id),
    category    text NOT NULL REFERENCES membership.benefit_categories (category),
    title       text NOT NULL CHECK (pg_catalog.btrim(title) <> '' AND pg_catalog.length(title) <= 200),
    description text CHECK (pg_catalog.length(description) <= 2000),
    url         text CHECK (url ~ '^https://' AND pg_catalog.length(url) <= 500),
    base_score  double precision NOT NULL DEFAULT 0 CHECK (base_score BETWEEN 0 AND 1),
    added_on    date NOT NULL DEFAULT CURRENT_DATE,
    active      boolean NOT NULL DEFAULT true
);
CREATE INDEX benefits_provider_idx ON membership.benefits (provider_id);
CREATE INDEX benefits_category_idx ON membership.benefits (category);
COMMENT ON TABLE membership.benefits IS
    'platform: the benefit catalogue; providers'' offers, each in one category with a base score';
SELECT membership.isolate_table('membership.benefits', NULL);

CREATE TABLE membership.category_relevance (
    profession  text NOT NULL
                CHECK (profession = pg_catalog.lower(pg_catalog.btrim(profession))
                       AND pg_catalog.length(profession) BETWEEN 1 AND 200),
    category    text NOT NULL REFERENCES membership.benefit_categories (category) ON DELETE CASCADE,
    relevance   double precision NOT NULL CHECK (relevance BETWEEN 0 AND 1),
    PRIMARY KEY (profession, category)
);
CREATE INDEX category_relevance_category_idx ON membership.category_relevance (category);
COMMENT ON TABLE membership.category_relevance IS
    'platform: how relevant each benefit category is to each profession (lower case), in [0, 1]';
SELECT membership.isolate_table('membership.category_relevance', NULL);

CREATE TABLE membership.benefit_offers (
    organisation_id  uuid NOT NULL REFERENCES membership.organisations (id),
    benefit_id       integer NOT NULL REFERENCES membership.benefits (id),
    promotion_weight double precision NOT NULL DEFAULT 0 CHECK (promotion_weight BETWEEN 0 AND 1),
    offered_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (organisation_id, benefit_id)
);
CREATE INDEX benefit_offers_benefit_idx ON membership.benefit_offers (benefit_id);
COMMENT ON TABLE membership.benefit_offers IS
    'tenant: the benefits an organisation offers its members, with how strongly it promotes each';
SELECT membership.isolate_table('membership.benefit_offers');

-- Raise an error unless a score-like value is a number in [0, 1].
CREATE FUNCTION membership.check_unit_interval(what text, value double precision) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = format('%s must not be null', what);
    END IF;
    IF NOT (value >= 0 AND value <= 1) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('%s must be between 0 and 1, not %s', what, value);
    END IF;
END
$$;

-- Raise an error unless the category exists.
CREATE FUNCTION membership.check_category(category text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF category IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'category must not be null';
    END IF;
    IF NOT EXISTS (SELECT FROM membership.benefit_categories c WHERE c.category = check_category.category) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown benefit category "%s"', category),
            HINT = 'Categories are listed in membership.benefit_categories.';
    END IF;
END
$$;

-- Create a category, or rename one.
CREATE FUNCTION membership.set_benefit_category(category text, name text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF category IS NULL OR name IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'category and name must not be null';
    END IF;
    IF category !~ '^[a-z][a-z0-9_]{0,31}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid benefit category "%s"', category),
            HINT = 'Categories are 1 to 32 lower-case letters, digits and underscores, starting with a letter.';
    END IF;
    IF btrim(name) = '' OR length(name) > 100 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'category name must be 1 to 100 characters';
    END IF;
    INSERT INTO membership.benefit_categories AS c (category, name)
    VALUES (set_benefit_category.category, btrim(set_benefit_category.name))
    ON CONFLICT ON CONSTRAINT benefit_categories_pkey DO UPDATE SET name = EXCLUDED.name;
END
$$;
GRANT EXECUTE ON FUNCTION membership.set_benefit_category(text, text) TO membership_platform_admin;

-- Raise an error unless a benefit's texts fit the catalogue.
CREATE FUNCTION membership.check_benefit_text(title text, description text, url text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF title IS NOT NULL AND (btrim(title) = '' OR length(title) > 200) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'benefit title must be 1 to 200 characters';
    END IF;
    IF length(description) > 2000 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'benefit description must be at most 2000 characters';
    END IF;
    IF url IS NOT NULL AND (url !~ '^https://' OR length(url) > 500) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('benefit url "%s" must be an https URL of at most 500 characters', left(url, 100));
    END IF;
END
$$;

-- Add a benefit to the catalogue; returns its id.
CREATE FUNCTION membership.create_benefit(provider text, category text, title text,
                                          base_score double precision DEFAULT 0,
                                          description text DEFAULT NULL, url text DEFAULT NULL,
                                          added_on date DEFAULT CURRENT_DATE)
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_provider uuid;
    v_id integer;
BEGIN
    IF provider IS NULL OR title IS NULL OR added_on IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'provider, title and added_on must not be null';
    END IF;
    SELECT p.id INTO v_provider FROM membership.providers p WHERE p.slug = provider;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('provider "%s" does not exist', provider),
            HINT = 'Create it with membership.create_provider().';
    END IF;
    PERFORM membership.check_category(category);
    PERFORM membership.check_unit_interval('base_score', base_score);
    PERFORM membership.check_benefit_text(title, description, url);
    IF NOT isfinite(added_on) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = 'added_on must be a finite date';
    END IF;
    INSERT INTO membership.benefits (provider_id, category, title, description, url, base_score, added_on)
    VALUES (v_provider, create_benefit.category, btrim(title), nullif(btrim(description), ''),
            create_benefit.url, create_benefit.base_score, create_benefit.added_on)
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;
GRANT EXECUTE ON FUNCTION membership.create_benefit(text, text, text, double precision, text, text, date)
    TO membership_platform_admin;

-- Change a benefit; NULL leaves a field as it is.  Deactivating a benefit
-- takes it out of every feed at once (membership_api.feed shows active
-- benefits only) and out of the next nightly scoring.
CREATE FUNCTION membership.update_benefit(benefit integer, title text DEFAULT NULL,
                                          description text DEFAULT NULL, url text DEFAULT NULL,
                                          base_score double precision DEFAULT NULL,
                                          active boolean DEFAULT NULL, category text DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF benefit IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'benefit must not be null';
    END IF;
    IF base_score IS NOT NULL THEN
        PERFORM membership.check_unit_interval('base_score', base_score);
    END IF;
    IF category IS NOT NULL THEN
        PERFORM membership.check_category(category);
    END IF;
    PERFORM membership.check_benefit_text(title, description, url);
    UPDATE membership.benefits b
    SET title = coalesce(btrim(update_benefit.title), b.title),
        description = coalesce(nullif(btrim(update_benefit.description), ''), b.description),
        url = coalesce(update_benefit.url, b.url),
        base_score = coalesce(update_benefit.base_score, b.base_score),
        active = coalesce(update_benefit.active, b.active),
        category = coalesce(update_benefit.category, b.category)
    WHERE b.id = benefit;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('benefit %s does not exist', benefit);
    END IF;
END
$$;
GRANT EXECUTE ON FUNCTION membership.update_benefit(integer, text, text, text, double precision, boolean, text)
    TO membership_platform_admin;

-- Set how relevant a category is to a profession; NULL removes the pair.
CREATE FUNCTION membership.set_category_relevance(profession text, category text, relevance double precision)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_profession text := lower(btrim(profession));
BEGIN
    IF profession IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'profession must not be null';
    END IF;
    IF v_profession = '' OR length(v_profession) > 200 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'profession must be 1 to 200 characters';
    END IF;
    PERFORM membership.check_category(category);
    IF relevance IS NULL THEN
        DELETE FROM membership.category_relevance r
        WHERE r.profession = v_profession AND r.category = set_category_relevance.category;
        RETURN;
    END IF;
    PERFORM membership.check_unit_interval('relevance', relevance);
    INSERT INTO membership.category_relevance AS r (profession, category, relevance)
    VALUES (v_profession, set_category_relevance.category, set_category_relevance.relevance)
    ON CONFLICT ON CONSTRAINT category_relevance_pkey DO UPDATE SET relevance = EXCLUDED.relevance;
END
$$;
GRANT EXECUTE ON FUNCTION membership.set_category_relevance(text, text, double precision)
    TO membership_platform_admin;

-- Offer a benefit to an organisation's members (or change its promotion
-- weight).
CREATE FUNCTION membership.offer_benefit(organisation uuid, benefit integer,
                                         promotion_weight double precision DEFAULT 0)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    PERFORM membership.enter_organisation(organisation);
    IF benefit IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'benefit must not be null';
    END IF;
    IF NOT EXISTS (SELECT FROM membership.benefits b WHERE b.id = benefit) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('benefit %s does not exist', benefit);
    END IF;
    PERFORM membership.check_unit_interval('promotion_weight', promotion_weight);
    INSERT INTO membership.benefit_offers AS o (organisation_id, benefit_id, promotion_weight)
    VALUES (organisation, benefit, offer_benefit.promotion_weight)
    ON CONFLICT ON CONSTRAINT benefit_offers_pkey DO UPDATE SET promotion_weight = EXCLUDED.promotion_weight;
END
$$;
GRANT EXECUTE ON FUNCTION membership.offer_benefit(uuid, integer, double precision) TO membership_platform_admin;

-- Stop offering a benefit; true if it was offered.
CREATE FUNCTION membership.withdraw_benefit(organisation uuid, benefit integer) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    PERFORM membership.enter_organisation(organisation);
    IF benefit IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'benefit must not be null';
    END IF;
    DELETE FROM membership.benefit_offers o WHERE o.organisation_id = organisation AND o.benefit_id = benefit;
    RETURN FOUND;
END
$$;
GRANT EXECUTE ON FUNCTION membership.withdraw_benefit(uuid, integer) TO membership_platform_admin;

-- An organisation administrator sets how strongly the organisation
-- promotes one of the benefits it offers.
CREATE FUNCTION membership_api.set_benefit_promotion(benefit integer, promotion_weight double precision)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_caller membership.caller := membership.authenticate(NULL, 'org_admin');
BEGIN
    IF benefit IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = 'benefit must not be null';
    END IF;
    PERFORM membership.check_unit_interval('promotion_weight', promotion_weight);
    UPDATE membership.benefit_offers o SET promotion_weight = set_benefit_promotion.promotion_weight
    WHERE o.organisation_id = v_caller.organisation_id AND o.benefit_id = benefit;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404',
            MESSAGE = format('your organisation does not offer benefit %s', benefit);
    END IF;
END
$$;
GRANT EXECUTE ON FUNCTION membership_api.set_benefit_promotion(integer, double precision) TO membership_org_admin;
COMMENT ON FUNCTION membership_api.set_benefit_promotion(integer, double precision) IS
    'organisation administrators: how strongly the organisation promotes a benefit it offers (0 to 1)';
