-- Installing the extension: roles, schemas, privileges, reinstalling.
CREATE EXTENSION membership;
SELECT e.extversion = a.default_version AS latest_version
FROM pg_extension e JOIN pg_available_extensions a ON a.name = e.extname WHERE e.extname = 'membership';

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

-- Fixtures shared with the pgTAP suites.
\i test/fixtures.sql

-- The install script refuses to run outside CREATE EXTENSION (it prints
-- how to load it and stops, creating nothing; this comes last).
SELECT 'membership--' || default_version || '.sql' AS script
FROM pg_available_extensions WHERE name = 'membership' \gset
\set ECHO none
\i :script
\set ECHO all
SELECT 'the script stopped at its guard, creating nothing' AS result;
