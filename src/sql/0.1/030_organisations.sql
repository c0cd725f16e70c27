-- Organisations: the tenants.  Each has a white-label app configuration.

-- What is wrong with a white-label app configuration, or NULL when nothing
-- is.  Used both by the table's CHECK and to give callers a precise error.
CREATE FUNCTION membership.app_config_problem(config jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
    SELECT CASE
        WHEN config IS NULL THEN 'app_config must not be null'
        WHEN jsonb_typeof(config) <> 'object' THEN 'app_config must be a JSON object'
        ELSE (
            SELECT format('app_config key "%s" %s', key, problem)
            FROM (
                SELECT key,
                       CASE
                       WHEN key NOT IN ('app_name', 'theme', 'logo_url', 'apns_topic',
                                        'fcm_project', 'support_email')
                           THEN 'is not a known setting'
                       WHEN key = 'theme' AND jsonb_typeof(value) <> 'object'
                           THEN 'must be an object of colours'
                       WHEN key = 'theme' AND EXISTS (
                               SELECT FROM jsonb_each(value) AS c
                               WHERE jsonb_typeof(c.value) <> 'string'
                                  OR c.value #>> '{}' !~ '^#[0-9A-Fa-f]{6}$')
                           THEN 'must hold colours written as "#RRGGBB"'
                       WHEN key <> 'theme' AND jsonb_typeof(value) <> 'string'
                           THEN 'must be a string'
                       WHEN key <> 'theme' AND length(value #>> '{}') NOT BETWEEN 1 AND 300
                           THEN 'must be 1 to 300 characters'
                       WHEN key = 'logo_url' AND value #>> '{}' !~ '^https://'
                           THEN 'must be an https URL'
                       WHEN key = 'support_email' AND NOT membership.is_valid_email(value #>> '{}')
                           THEN 'must be an e-mail address'
                       END AS problem
                FROM jsonb_each(config)
            ) AS checked
            WHERE problem IS NOT NULL
            ORDER BY key
            LIMIT 1)
        END
$$;

CREATE TABLE membership.organisations (
    id          uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    slug        text NOT NULL UNIQUE
                CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
    name        text NOT NULL
                CHECK (pg_catalog.btrim(name) <> '' AND pg_catalog.length(name) <= 200),
    app_config  jsonb NOT NULL DEFAULT '{}'
                CHECK (membership.app_config_problem(app_config) IS NULL),
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE membership.organisations IS
    'tenant: the professional organisations that own their members'' data';
SELECT membership.isolate_table('membership.organisations', 'id');

CREATE FUNCTION membership.check_app_config(config jsonb) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_problem text := membership.app_config_problem(config);
BEGIN
    IF config IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed', MESSAGE = v_problem;
    END IF;
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = v_problem,
            HINT = 'Known settings: app_name, theme (colours as "#RRGGBB"), logo_url, apns_topic, fcm_project, support_email.';
    END IF;
END
$$;

CREATE FUNCTION membership.create_organisation(slug text, name text, app_config jsonb DEFAULT '{}')
    RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
DECLARE
    v_id uuid := gen_random_uuid();
BEGIN
    PERFORM membership.check_slug_and_name('organisation', slug, name);
    PERFORM membership.check_app_config(app_config);

    PERFORM membership.set_tenant(v_id);
    INSERT INTO membership.organisations (id, slug, name, app_config)
    VALUES (v_id, create_organisation.slug, btrim(create_organisation.name),
            create_organisation.app_config);
    RETURN v_id;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION USING ERRCODE = 'unique_violation',
        MESSAGE = format('organisation "%s" already exists', slug);
END
$$;
GRANT EXECUTE ON FUNCTION membership.create_organisation(text, text, jsonb) TO membership_platform_admin;

-- Act for an organisation, raising an error unless it exists.  Every
-- platform function that takes an organisation starts here.
CREATE FUNCTION membership.enter_organisation(organisation uuid) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    IF organisation IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'organisation must not be null';
    END IF;
    PERFORM membership.set_tenant(organisation);
    IF NOT EXISTS (SELECT FROM membership.organisations o WHERE o.id = organisation) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('organisation %s does not exist', organisation);
    END IF;
END
$$;

CREATE FUNCTION membership.set_app_config(organisation uuid, app_config jsonb)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, membership, pg_temp
    AS $$
BEGIN
    PERFORM membership.enter_organisation(organisation);
    PERFORM membership.check_app_config(app_config);
    UPDATE membership.organisations o SET app_config = set_app_config.app_config
    WHERE o.id = organisation;
END
$$;
GRANT EXECUTE ON FUNCTION membership.set_app_config(uuid, jsonb) TO membership_platform_admin;

-- Every organisation, for the platform: read in C past row-level security
-- (see src/tenant.c), since no single tenant context covers them all.
CREATE FUNCTION membership.list_organisations(
        OUT id uuid, OUT slug text, OUT name text, OUT created_at timestamptz)
    RETURNS SETOF record
    LANGUAGE C STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'membership_list_organisations';
GRANT EXECUTE ON FUNCTION membership.list_organisations() TO membership_platform_admin;
