-- Tenant isolation of the privacy API (issue #7): as each kind of caller
-- of organisation A, nothing of organisation B can be read, exported or
-- erased; a session that is not the gateway cannot pass for B by forging
-- claims or headers; the platform functions (offboarding, purge,
-- erasure by id) are not callable by any client role.
BEGIN;
SELECT plan(25);
\ir ../fixtures.sql

SELECT fixture.new_org('pi-a') IS NOT NULL AS a, fixture.new_org('pi-b') IS NOT NULL AS b \gset
SELECT fixture.org('pi-a') AS org_a, fixture.org('pi-b') AS org_b \gset
-- both organisations have a member "m1" (same external id, same address) and an "m2"
SELECT membership_api.sync_members('[{"external_id": "m1", "email": "m1@pi.example"}, {"external_id": "m2"}]',
                                   'delta', fixture.key('pi-a:org')) IS NOT NULL AS synced_a,
       membership_api.sync_members('[{"external_id": "m1", "email": "m1@pi.example"}, {"external_id": "m2"}]',
                                   'delta', fixture.key('pi-b:org')) IS NOT NULL AS synced_b \gset
SELECT fixture.claims('member', 'pi-a', 'm1') AS member_a, fixture.claims('org_admin', 'pi-a') AS admin_a,
       fixture.claims('member', 'pi-b', 'm1') AS member_b, fixture.claims('org_admin', 'pi-b') AS admin_b \gset
SELECT membership.find_member(:'org_a', 'm1') AS a_m1 \gset
SELECT membership.earn_points(:'org_b', membership.find_member(:'org_b', 'm1'), 10000, 'order', 'b-order') AS earned_b \gset
SELECT set_config('request.jwt.claims', :'member_b', true) IS NOT NULL AS claims \gset
SELECT membership_api.set_consent('marketing', true) IS NOT NULL AS consent_b \gset
SELECT set_config('request.jwt.claims', '', true) IS NOT NULL AS cleared \gset

-- A snapshot of B's personal data, to compare with after A's callers have acted.
CREATE FUNCTION pg_temp.b_now() RETURNS TABLE (t text, data jsonb) LANGUAGE plpgsql AS $$
DECLARE
    v_table record;
BEGIN
    FOR v_table IN SELECT * FROM membership.tenant_tables_in_delete_order() LOOP
        RETURN QUERY EXECUTE format('SELECT %L, to_jsonb(r) FROM membership.%I r WHERE r.%I = $1',
                                    v_table.table_name, v_table.table_name, v_table.tenant_column)
            USING fixture.org('pi-b');
    END LOOP;
END
$$;
CREATE TEMPORARY TABLE b_before AS SELECT * FROM pg_temp.b_now();
CREATE FUNCTION pg_temp.b_changed() RETURNS SETOF text LANGUAGE sql AS $$
    SELECT 'changed: ' || t || ' ' || data::text FROM (SELECT * FROM b_before EXCEPT SELECT * FROM pg_temp.b_now()) x
    UNION ALL
    SELECT 'new: ' || t || ' ' || data::text FROM (SELECT * FROM pg_temp.b_now() EXCEPT SELECT * FROM b_before) y
$$;
SELECT isnt_empty($$SELECT * FROM b_before WHERE t = 'loyalty_ledger'$$, 'the fixture has B''s ledger to protect');

-------------------------------------------------------------------------
-- A's member: the export is theirs alone.
-------------------------------------------------------------------------
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'member_a', true);
SELECT is(membership_api.export_my_data() ->> 'member_id', :'a_m1',
    'export_my_data() as A''s member is about that member');
SELECT is(membership_api.export_my_data() -> 'organisation' ->> 'id', :'org_a',
    'export_my_data() as A''s member names organisation A');
SELECT is((SELECT count(*) FROM jsonb_each(membership_api.export_my_data() -> 'data') s,
                                jsonb_array_elements(s.value) r
           WHERE r ? 'organisation_id' AND r ->> 'organisation_id' <> :'org_a'), 0::bigint,
    'export_my_data() as A''s member holds no row of another organisation');
SELECT is(membership_api.export_my_data() -> 'data' -> 'loyalty_ledger', '[]'::jsonb,
    'export_my_data() as A''s member does not show B''s m1''s points');
SELECT throws_ok($$SELECT membership_api.erase_member('m2')$$, '42501', NULL,
    'erase_member() is not granted to members');
RESET ROLE;
RESET SESSION AUTHORIZATION;

-------------------------------------------------------------------------
-- A's administrator and A's keys: erasing "m2" erases A's m2 only.
-------------------------------------------------------------------------
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'admin_a', true);
SELECT throws_ok('SELECT membership_api.export_my_data()', '42501', NULL,
    'export_my_data() is not granted to organisation administrators');
SELECT is(membership_api.erase_member('m2') ->> 'erased', 'true', 'erase_member() as A''s administrator erases A''s m2');
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', true);
SELECT is(membership.find_member(:'org_b', 'm2') IS NOT NULL, true, '... and B''s m2 is still there');
SELECT is(membership_api.erase_member('m1', fixture.key('pi-a:org')) ->> 'erased', 'true',
    'erase_member() with A''s key erases A''s m1');
SELECT is(membership_api.verify_member('m1@pi.example', NULL, fixture.key('pi-b:provider')) ->> 'verified', 'true',
    '... and B''s member with the same address still verifies');
SELECT throws_ok($$SELECT membership_api.erase_member('m1', fixture.key('pi-a:org'))$$, 'P0002', NULL,
    '... and A''s key cannot reach B''s m1 once A''s is gone');
SELECT throws_ok($$SELECT membership_api.erase_member('m1', fixture.key('pi-a:provider'))$$, 'PT403', NULL,
    'erase_member() refuses provider keys');
SELECT is_empty('SELECT pg_temp.b_changed()', 'after A''s callers acted, nothing of B changed');

-------------------------------------------------------------------------
-- A session that is not the gateway, forging B's claims or headers.
-------------------------------------------------------------------------
SET SESSION AUTHORIZATION mallory;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'member_b', true);
SELECT throws_ok('SELECT membership_api.export_my_data()', 'PT401', 'JWT claims are not trusted in this session',
    'forged member claims: export_my_data() refused');
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'admin_b', true);
SELECT throws_ok($$SELECT membership_api.erase_member('m1')$$, 'PT401', NULL,
    'forged administrator claims: erase_member() refused');
SELECT set_config('request.jwt.claims', '', true);
SET ROLE membership_provider;
SELECT set_config('request.headers', format('{"x-api-key": "%s"}', 'mk_aaaaaaaa_' || repeat('a', 52)), true);
SELECT throws_ok($$SELECT membership_api.erase_member('m1')$$, 'PT401', 'invalid API key',
    'forged headers without a real key: erase_member() refused');
SELECT set_config('request.headers', '', true);
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT is_empty('SELECT pg_temp.b_changed()', 'after all of that, nothing of B changed');

-------------------------------------------------------------------------
-- The platform functions are out of every client role's reach.
-------------------------------------------------------------------------
SELECT ok(NOT has_function_privilege(r.rolname, f.fn, 'EXECUTE'),
          format('%s cannot execute %s', r.rolname, f.fn))
FROM (VALUES ('membership_member'), ('membership_org_admin'), ('membership_provider')) AS r(rolname),
     (VALUES ('membership.offboard_organisation(uuid)'), ('membership.purge_offboarded(timestamptz)')) AS f(fn)
ORDER BY 1;
SELECT ok(NOT has_function_privilege('membership_org_admin', 'membership.erase_member(uuid, uuid)', 'EXECUTE'),
    'organisation administrators cannot erase by member id (they go through membership_api.erase_member)');

SELECT * FROM finish();
ROLLBACK;
