-- Caller identity: API keys from the argument or the x-api-key header, JWT
-- claims trusted only from the gateway role, and the tenant context.
SELECT fixture.new_org('id-a') IS NOT NULL, fixture.new_org('id-b') IS NOT NULL;
SELECT membership_api.sync_members('[{"external_id": "a1", "email": "a1@id-a.example"}]',
                                   'delta', fixture.key('id-a:org'));
SELECT membership_api.sync_members('[{"external_id": "b1", "email": "b1@id-b.example"}]',
                                   'delta', fixture.key('id-b:org'));

-- No credentials, malformed and unknown keys: PT401 with what is missing.
SELECT fixture.try($$SELECT membership_api.sync_members('[]')$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[]', 'delta', '')$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[]', 'delta', 'not-a-key')$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[]', 'delta',
    'mk_aaaaaaaa_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa')$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[]', 'delta', upper(fixture.key('id-a:org')))$$);

-- A key of the wrong kind: PT403, naming who may call.
SELECT fixture.try($$SELECT membership_api.sync_members('[]', 'delta', fixture.key('id-a:provider'))$$);

-- The x-api-key header counts like the argument, from any session; the
-- argument wins over the header.
SELECT set_config('request.headers', json_build_object('x-api-key', fixture.key('id-a:org'))::text, false) IS NOT NULL;
SELECT membership_api.sync_members('[{"external_id": "a2"}]');
SELECT set_config('request.headers', '{"x-api-key": "mk_bogus"}', false) IS NOT NULL;
SELECT fixture.try($$SELECT membership_api.sync_members('[]')$$);
SELECT fixture.try($$SELECT membership_api.sync_members('[]', 'delta', fixture.key('id-b:org'))$$);
SELECT set_config('request.headers', 'this is not json', false) IS NOT NULL;
SELECT fixture.try($$SELECT membership_api.sync_members('[]')$$);
SELECT set_config('request.headers', '{"x-api-key": 12}', false) IS NOT NULL;
SELECT fixture.try($$SELECT membership_api.sync_members('[]')$$);
SELECT set_config('request.headers', '', false) IS NOT NULL;

-- Each key acts for its own organisation only.
SELECT external_id, organisation_id = fixture.org('id-a') AS in_a
FROM membership.members WHERE external_id IN ('a1', 'a2', 'b1') ORDER BY external_id;

-- JWT claims from a session that is not the gateway are refused, even for
-- a role the session may take.
SELECT fixture.claims('org_admin', 'id-a') AS admin_a, fixture.claims('member', 'id-a', 'a1') AS member_a1 \gset
SET SESSION AUTHORIZATION mallory;
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'admin_a', false) IS NOT NULL;
SELECT fixture.try($$SELECT membership_api.sync_members('[]')$$);
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL;

-- From the gateway, after switching to the token's role, they are trusted.
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'admin_a', false) IS NOT NULL;
SELECT membership_api.sync_members('[{"external_id": "a3"}]');
-- ...but not when the current role is not the token's role.
RESET ROLE;
SELECT fixture.try($$SELECT membership_api.sync_members('[]')$$);
SET ROLE membership_provider;
SELECT fixture.try($$SELECT membership_api.sync_members('[]')$$);
SET ROLE membership_member;
SELECT fixture.try($$SELECT membership_api.sync_members('[]')$$);
-- A member's token cannot sync.
SELECT set_config('request.jwt.claims', :'member_a1', false) IS NOT NULL;
SELECT fixture.try($$SELECT membership_api.sync_members('[]')$$);
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT external_id FROM membership.members WHERE external_id = 'a3';

-- Malformed or incomplete claims from the gateway: PT401.
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', '{"role": "membership_org_admin"}', false) IS NOT NULL;
SELECT fixture.try($$SELECT membership_api.sync_members('[]')$$);
SELECT set_config('request.jwt.claims', '{"role": "membership_org_admin", "org_id": "nope"}', false) IS NOT NULL;
SELECT fixture.try($$SELECT membership_api.sync_members('[]')$$);
SELECT set_config('request.jwt.claims', '{"role": "membership_org_admin", "org_id": "00000000-0000-0000-0000-000000000000"}', false) IS NOT NULL;
SELECT fixture.try($$SELECT membership_api.sync_members('[]')$$);
SELECT set_config('request.jwt.claims', '{"role": "anon"}', false) IS NOT NULL;
SELECT fixture.try($$SELECT membership_api.sync_members('[]')$$);
SELECT set_config('request.jwt.claims', '{"role": ', false) IS NOT NULL;
SELECT fixture.try($$SELECT membership_api.sync_members('[]')$$);
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL;

-- A member token naming a member of another organisation is refused.
SELECT json_build_object('role', 'membership_member', 'org_id', fixture.org('id-a'),
                         'member_id', membership.find_member(fixture.org('id-b'), 'b1'))::text AS cross_member \gset
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'cross_member', false) IS NOT NULL;
SELECT fixture.try($$SELECT * FROM membership_api.dependents()$$);
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL;

-- The gateway role is a superuser-only setting, and no other membership.*
-- setting can be invented to steer the tenant.
SET SESSION AUTHORIZATION mallory;
SELECT fixture.try($$SET membership.gateway_role = 'mallory'$$);
SELECT fixture.try($$SET membership.org_id = '00000000-0000-0000-0000-000000000000'$$);
SELECT fixture.try($$SELECT set_config('membership.current_org', 'x', false)$$);
RESET SESSION AUTHORIZATION;
SHOW membership.gateway_role;

-- The tenant context: set only by the extension's own code, gone at the
-- end of the transaction.
SELECT membership.current_org_id() IS NULL AS empty_outside_calls;
BEGIN;
SELECT membership_api.sync_members('[]', 'delta', fixture.key('id-a:org')) IS NOT NULL;
SELECT membership.current_org_id() = fixture.org('id-a') AS set_by_call,
       membership.current_caller_kind() AS kind;
COMMIT;
SELECT membership.current_org_id() IS NULL AS cleared_at_commit;
SELECT fixture.org('id-a') AS id_a \gset
BEGIN;
SET LOCAL ROLE membership_owner;
SELECT membership.set_tenant(:'id_a');
SELECT membership.current_caller_kind(), membership.current_org_id() = :'id_a' AS tenant;
COMMIT;
-- Clients cannot reach the context functions; and even if a careless grant
-- let them, the functions themselves refuse anyone but the owner role.
SET SESSION AUTHORIZATION mallory;
SELECT fixture.try($$SELECT membership.set_tenant(NULL)$$);
SELECT fixture.try($$SELECT membership.authenticate(NULL, 'member')$$);
RESET SESSION AUTHORIZATION;
BEGIN;
GRANT USAGE ON SCHEMA membership TO mallory;
GRANT EXECUTE ON FUNCTION membership.set_tenant(uuid), membership.authenticate(text, text[]) TO mallory;
SET SESSION AUTHORIZATION mallory;
SELECT fixture.try(format('SELECT membership.set_tenant(%L)', :'id_a'));
SELECT fixture.try($$SELECT membership.authenticate(NULL, 'member')$$);
ROLLBACK;
