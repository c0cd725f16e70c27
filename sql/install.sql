-- Installing the extension: roles, schemas, privileges, reinstalling.
CREATE EXTENSION membership;
SELECT extversion FROM pg_extension WHERE extname = 'membership';

-- The roles exist, none can log in, and the owner can neither bypass
-- row-level security nor act as a superuser.
SELECT rolname, rolsuper, rolbypassrls, rolcanlogin, rolcreaterole
FROM pg_roles WHERE rolname LIKE 'membership\_%' ORDER BY rolname;

-- Clients may use the API schema; only the platform and the owner the
-- internal one.
SELECT r.rolname,
       has_schema_privilege(r.rolname, 'membership_api', 'USAGE') AS api,
       has_schema_privilege(r.rolname, 'membership', 'USAGE') AS internal
FROM pg_roles r WHERE r.rolname LIKE 'membership\_%' ORDER BY r.rolname;

-- A pre-existing owner role with dangerous attributes is corrected on
-- install, and roles survive DROP EXTENSION.
DROP EXTENSION membership;
ALTER ROLE membership_owner BYPASSRLS;
CREATE EXTENSION membership;
SELECT rolbypassrls FROM pg_roles WHERE rolname = 'membership_owner';

-- Fixtures for the other suites: the gateway role PostgREST logs in as, a
-- client role that is not the gateway, a helper that reports an error as
-- "SQLSTATE: message" (random key prefixes and ids masked), and a helper that makes an organisation with a
-- provider key and an organisation key, kept in regress.keys.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticator') THEN
        CREATE ROLE authenticator LOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mallory') THEN
        CREATE ROLE mallory LOGIN;
    END IF;
END
$$;
GRANT membership_member, membership_org_admin, membership_provider,
      membership_platform_admin TO authenticator;
GRANT membership_member, membership_org_admin, membership_provider TO mallory;

CREATE SCHEMA regress;
GRANT USAGE ON SCHEMA regress TO PUBLIC;

CREATE FUNCTION regress.try(stmt text) RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
    v_message text;
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
    -- key prefixes and ids are random: mask them
    RETURN v_state || ': ' || regexp_replace(regexp_replace(v_message,
        'mk_[a-z2-7]{8}', 'mk_XXXXXXXX', 'g'),
        '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g');
END
$$;

CREATE TABLE regress.keys (name text PRIMARY KEY, key text NOT NULL);
GRANT SELECT ON regress.keys TO PUBLIC;
CREATE FUNCTION regress.key(name text) RETURNS text
    LANGUAGE sql STABLE AS $$ SELECT key FROM regress.keys k WHERE k.name = $1 $$;

CREATE FUNCTION regress.org(slug text) RETURNS uuid
    LANGUAGE sql STABLE AS $$
    SELECT (SELECT id FROM membership.organisations o WHERE o.slug = $1)
$$;

-- An organisation "slug" with keys "slug:org" (its own, enterprise plan)
-- and "slug:provider" (provider "slug-bank", free plan).
CREATE FUNCTION regress.new_org(slug text) RETURNS uuid
    LANGUAGE plpgsql AS $$
DECLARE
    v_org uuid := membership.create_organisation(slug, 'Organisation ' || slug);
BEGIN
    PERFORM membership.create_provider(slug || '-bank', 'Bank of ' || slug);
    INSERT INTO regress.keys VALUES
        (slug || ':org', membership.issue_api_key(v_org, NULL, 'enterprise')),
        (slug || ':provider', membership.issue_api_key(v_org, slug || '-bank', 'free'));
    RETURN v_org;
END
$$;

-- JWT claims as PostgREST would set them.
CREATE FUNCTION regress.claims(role text, org_slug text, external_id text DEFAULT NULL)
    RETURNS text
    LANGUAGE sql STABLE AS $$
    SELECT json_strip_nulls(json_build_object(
        'role', 'membership_' || role,
        'org_id', regress.org(org_slug),
        'member_id', (SELECT m.id FROM membership.members m
                      WHERE m.organisation_id = regress.org(org_slug)
                        AND m.external_id = claims.external_id)))::text
$$;

-- The install script refuses to run outside CREATE EXTENSION (it prints
-- how to load it and stops, creating nothing; this comes last).
\i membership--0.1.sql
SELECT 'the script stopped at its guard, creating nothing' AS result;
