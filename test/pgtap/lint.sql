-- Catalog lint: the rules of DESIGN.md section 3, checked over every table,
-- view, sequence and function the extension has, so that objects added
-- later are covered without anyone listing them here.
BEGIN;
SELECT plan(16);

-- Tables of the extension's schemas.
CREATE TEMPORARY VIEW ext_tables AS
SELECT c.oid, c.oid::regclass AS tbl, c.relname, c.relowner, c.relrowsecurity, c.relforcerowsecurity,
       CASE WHEN c.relname = 'organisations' THEN 'id'
            WHEN EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid
                         AND a.attname = 'organisation_id' AND NOT a.attisdropped)
                THEN 'organisation_id' END AS tenant_column
FROM pg_class c
WHERE c.relnamespace IN ('membership'::regnamespace, 'membership_api'::regnamespace)
  AND c.relkind IN ('r', 'p');

-- Tables that hold no tenant's data, and why.  A new table without an
-- organisation_id fails the next test until it is listed here.
CREATE TEMPORARY TABLE global_tables (relname name PRIMARY KEY, why text NOT NULL);
INSERT INTO global_tables VALUES
    ('plans', 'platform price list'),
    ('providers', 'platform directory of providers; keys bind them to organisations'),
    ('benefit_categories', 'platform list of benefit categories'),
    ('benefits', 'platform benefit catalogue; organisations offer benefits through benefit_offers'),
    ('category_relevance', 'platform profession-to-category relevance matrix'),
    ('jobs', 'registry of the extension''s periodic jobs'),
    ('job_settings', 'platform schedules of the periodic jobs'),
    ('job_runs', 'record of job runs across organisations: counts and errors, no member data'),
    ('personal_data', 'inventory of what each tenant table holds of members, read by erasure and export'),
    ('purged_organisations', 'what is left of a purged organisation: its name and row counts, no member data');

SELECT set_eq(
    'SELECT relname FROM ext_tables WHERE tenant_column IS NULL',
    'SELECT relname FROM global_tables',
    'every table has a tenant column or is a listed platform table');

SELECT is_empty(
    $$SELECT tbl::text FROM ext_tables WHERE tenant_column IS NOT NULL
      AND NOT (relrowsecurity AND relforcerowsecurity)$$,
    'every tenant table has ENABLE and FORCE ROW LEVEL SECURITY');

SELECT is_empty(
    $$SELECT t.tbl::text FROM ext_tables t WHERE t.tenant_column IS NOT NULL
      AND NOT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = t.oid)$$,
    'every tenant table has a policy');

SELECT is_empty(
    $$SELECT t.tbl::text || ' ' || p.polname
      FROM ext_tables t JOIN pg_policy p ON p.polrelid = t.oid
      WHERE t.tenant_column IS NOT NULL
        AND (pg_get_expr(p.polqual, p.polrelid) IS DISTINCT FROM
                 format('(%I = ( SELECT membership.current_org_id() AS current_org_id))', t.tenant_column)
             OR (p.polwithcheck IS NOT NULL
                 AND pg_get_expr(p.polwithcheck, p.polrelid) <> pg_get_expr(p.polqual, p.polrelid))
             OR p.polcmd <> '*' OR NOT p.polpermissive)$$,
    'every policy is the tenant rule through a sub-select, for every command');

SELECT is_empty(
    $$SELECT t.tbl::text FROM ext_tables t WHERE t.tenant_column IS NOT NULL
      AND NOT EXISTS (SELECT FROM pg_index i
                      JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]
                      WHERE i.indrelid = t.oid AND a.attname = t.tenant_column)$$,
    'every tenant column leads an index');

SELECT is_empty(
    $$SELECT c.oid::regclass::text FROM pg_class c
      WHERE c.relnamespace IN ('membership'::regnamespace, 'membership_api'::regnamespace)
        AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
        AND c.relowner <> 'membership_owner'::regrole$$,
    'the owner role owns every table, view and sequence');

SELECT is_empty(
    $$SELECT c.oid::regclass::text || ' to ' || coalesce(r.rolname, 'PUBLIC') || ': ' || a.privilege_type
      FROM pg_class c, aclexplode(c.relacl) a
      LEFT JOIN pg_roles r ON r.oid = a.grantee
      WHERE c.relnamespace IN ('membership'::regnamespace, 'membership_api'::regnamespace)
        AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
        AND a.grantee <> c.relowner$$,
    'no role other than the owner holds any privilege on a table, view or sequence');

SELECT is_empty(
    $$SELECT c.oid::regclass::text FROM pg_class c
      WHERE c.relnamespace IN ('membership'::regnamespace, 'membership_api'::regnamespace)
        AND c.relkind = 'v'
        AND NOT coalesce('security_invoker=true' = ANY (c.reloptions), false)
        AND c.relowner IN (SELECT oid FROM pg_roles WHERE rolsuper OR rolbypassrls)$$,
    'no view runs as a role that bypasses row-level security');

-- Functions.
CREATE TEMPORARY VIEW ext_functions AS
SELECT p.oid, p.oid::regprocedure::text AS fn, p.pronamespace::regnamespace::text AS nsp,
       p.prosecdef, p.proowner, p.proconfig, p.proacl, l.lanname
FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
WHERE p.pronamespace IN ('membership'::regnamespace, 'membership_api'::regnamespace);

SELECT is_empty(
    $$SELECT fn FROM ext_functions WHERE proowner <> 'membership_owner'::regrole$$,
    'the owner role owns every function');

SELECT is_empty(
    $$SELECT fn FROM ext_functions
      WHERE prosecdef AND NOT coalesce('search_path=pg_catalog, membership, pg_temp' = ANY (proconfig), false)$$,
    'every security definer function pins search_path to pg_catalog, membership, pg_temp');

SELECT is_empty(
    $$SELECT fn FROM ext_functions WHERE lanname IN ('plpgsql', 'sql')
      AND NOT coalesce(proconfig::text LIKE '%search_path=%', false)$$,
    'every SQL and PL/pgSQL function pins search_path');

SELECT is_empty(
    $$SELECT fn FROM ext_functions f, aclexplode(f.proacl) a WHERE a.grantee = 0$$,
    'no function is executable by PUBLIC');

SELECT is_empty(
    $$SELECT fn FROM ext_functions WHERE proacl IS NULL$$,
    'every function has explicit privileges (a NULL ACL means PUBLIC may execute)');

SELECT is_empty(
    $$SELECT fn FROM ext_functions WHERE nsp = 'membership_api' AND NOT prosecdef AND lanname <> 'c'$$,
    'every API function in SQL or PL/pgSQL is a security definer');

SELECT is_empty(
    $$SELECT fn || ' to ' || r.rolname FROM ext_functions f, aclexplode(f.proacl) a
      JOIN pg_roles r ON r.oid = a.grantee
      WHERE f.nsp = 'membership' AND r.rolname IN ('membership_provider', 'membership_member', 'membership_org_admin')$$,
    'clients (providers, members, organisation administrators) may execute nothing outside membership_api');

SELECT is_empty(
    $$SELECT rolname FROM pg_roles WHERE rolname = 'membership_owner'
      AND (rolsuper OR rolbypassrls OR rolcanlogin)$$,
    'the owner role is not a superuser, does not bypass row-level security and cannot log in');

SELECT * FROM finish();
ROLLBACK;
