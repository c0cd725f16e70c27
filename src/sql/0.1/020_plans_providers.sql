-- Plans and providers: platform-wide tables, not tenant data.

CREATE TABLE membership.plans (
    plan                text PRIMARY KEY
                        CHECK (plan ~ '^[a-z][a-z0-9_]{0,31}$'),
    requests_per_minute integer CHECK (requests_per_minute > 0)
);
COMMENT ON TABLE membership.plans IS
    'platform: verification plans; requests_per_minute NULL means unlimited';
SELECT membership.isolate_table('membership.plans', NULL);

INSERT INTO membership.plans (plan, requests_per_minute) VALUES
    ('free', 60), ('starter', 300), ('pro', 1000), ('enterprise', 5000);

-- Inserting a plan that exists updates it.  That is what lets pg_dump keep
-- every plan, the seeded ones included: a restore runs CREATE EXTENSION
-- (which seeds them) and then copies the dumped rows, whose limits win.
CREATE FUNCTION membership.plans_insert_updates() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    UPDATE membership.plans p SET requests_per_minute = NEW.requests_per_minute
    WHERE p.plan = NEW.plan;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER plans_insert_updates BEFORE INSERT ON membership.plans
    FOR EACH ROW EXECUTE FUNCTION membership.plans_insert_updates();

CREATE TABLE membership.providers (
    id          uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    slug        text NOT NULL UNIQUE
                CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
    name        text NOT NULL
                CHECK (pg_catalog.btrim(name) <> '' AND pg_catalog.length(name) <= 200),
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE membership.providers IS
    'platform: banks, insurers and retailers; each holds keys bound to one organisation';
SELECT membership.isolate_table('membership.providers', NULL);

-- Raise an error unless "slug" and "name" can name an organisation or a
-- provider ("what" says which, for the message).
CREATE FUNCTION membership.check_slug_and_name(what text, slug text, name text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF slug IS NULL OR name IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = format('%s slug and name must not be null', what);
    END IF;
    IF slug !~ '^[a-z0-9][a-z0-9-]{1,62}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid %s slug "%s"', what, slug),
            HINT = 'Slugs are 2 to 63 lower-case letters, digits and hyphens, starting with a letter or digit.';
    END IF;
    IF btrim(name) = '' OR length(name) > 200 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('%s name must be 1 to 200 characters', what);
    END IF;
END
$$;

-- Set a plan's limit, creating the plan if it is new.
CREATE FUNCTION membership.set_plan(plan text, requests_per_minute integer)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF plan IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'plan must not be null';
    END IF;
    IF plan !~ '^[a-z][a-z0-9_]{0,31}$' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid plan name "%s"', plan),
            HINT = 'Plan names are 1 to 32 lower-case letters, digits and underscores, starting with a letter.';
    END IF;
    IF requests_per_minute <= 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('requests per minute must be positive, not %s', requests_per_minute),
            HINT = 'Use NULL for an unlimited plan.';
    END IF;
    -- inserting an existing plan updates it (trigger plans_insert_updates)
    INSERT INTO membership.plans (plan, requests_per_minute)
    VALUES (set_plan.plan, set_plan.requests_per_minute);
END
$$;
GRANT EXECUTE ON FUNCTION membership.set_plan(text, integer) TO membership_platform_admin;

CREATE FUNCTION membership.create_provider(slug text, name text)
    RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_id uuid;
BEGIN
    PERFORM membership.check_slug_and_name('provider', slug, name);
    INSERT INTO membership.providers (slug, name)
    VALUES (create_provider.slug, btrim(create_provider.name))
    RETURNING id INTO v_id;
    RETURN v_id;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION USING ERRCODE = 'unique_violation',
        MESSAGE = format('provider "%s" already exists', slug);
END
$$;
GRANT EXECUTE ON FUNCTION membership.create_provider(text, text) TO membership_platform_admin;

CREATE FUNCTION membership.list_plans()
    RETURNS TABLE (plan text, requests_per_minute integer)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT p.plan, p.requests_per_minute FROM membership.plans p
    ORDER BY p.requests_per_minute NULLS LAST, p.plan
$$;
GRANT EXECUTE ON FUNCTION membership.list_plans() TO membership_platform_admin;

CREATE FUNCTION membership.list_providers()
    RETURNS TABLE (id uuid, slug text, name text, created_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT p.id, p.slug, p.name, p.created_at FROM membership.providers p ORDER BY p.slug
$$;
GRANT EXECUTE ON FUNCTION membership.list_providers() TO membership_platform_admin;
