-- Roles and schemas.
--
-- Roles are cluster-wide, so they are created only when missing and survive
-- DROP EXTENSION.  membership_owner owns every table and every SECURITY
-- DEFINER function; it must never be a superuser or bypass row-level
-- security, or FORCE ROW LEVEL SECURITY would not apply to it.

DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['membership_owner', 'membership_provider',
                             'membership_member', 'membership_org_admin',
                             'membership_platform_admin', 'membership_worker']
    LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$roles$;

ALTER ROLE membership_owner NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB NOLOGIN;

COMMENT ON ROLE membership_owner IS 'membership: owns every table and security definer function; subject to row-level security';
COMMENT ON ROLE membership_provider IS 'membership: providers calling with an API key (PostgREST anonymous role)';
COMMENT ON ROLE membership_member IS 'membership: members calling through the gateway with a JWT';
COMMENT ON ROLE membership_org_admin IS 'membership: organisation administrators calling through the gateway with a JWT';
COMMENT ON ROLE membership_platform_admin IS 'membership: platform administrators (onboarding, keys, plans)';
COMMENT ON ROLE membership_worker IS 'membership: background workers and scheduled jobs';

-- The extension's own schema ("membership") is created by CREATE EXTENSION.
-- membership_api holds only the functions PostgREST exposes.
CREATE SCHEMA membership_api;
COMMENT ON SCHEMA membership_api IS 'membership: the functions exposed through PostgREST';

REVOKE ALL ON SCHEMA membership FROM PUBLIC;
REVOKE ALL ON SCHEMA membership_api FROM PUBLIC;
GRANT USAGE ON SCHEMA membership TO membership_owner, membership_worker,
    membership_platform_admin;
GRANT USAGE ON SCHEMA membership_api TO membership_owner, membership_provider,
    membership_member, membership_org_admin, membership_platform_admin;


-- Bulk operations (member sync) stage their input in temporary tables.
DO $temp$
BEGIN
    EXECUTE pg_catalog.format('GRANT TEMPORARY ON DATABASE %I TO membership_owner',
                              pg_catalog.current_database());
END
$temp$;
