-- Identity and isolation: keys, gateway claims, forged claims, rotation.
\echo
\echo '== Identity and tenant isolation =='
\echo 'A provider key cannot sync members; no key at all is a PT401:'
SELECT fixture.try(format('SELECT membership_api.sync_members(%L, %L, %L)', '[]', 'delta',
       (SELECT key FROM dataset.keys WHERE organisation = 'nurses' AND provider IS NOT NULL LIMIT 1))) AS provider_key
UNION ALL
SELECT fixture.try($$SELECT membership_api.sync_members('[]')$$);

\echo 'Through the gateway (session user "authenticator", as PostgREST), a member of the Nurses Union'
\echo 'registers a dependent and sees only their own:'
SELECT json_build_object('role', 'membership_member', 'org_id', o.id, 'member_id', m.id)::text AS claims
FROM membership.organisations o JOIN membership.members m ON m.organisation_id = o.id
WHERE o.slug = 'nurses' AND m.external_id = 'NUR-000007' \gset
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'claims', false) \g /dev/null
SELECT membership_api.register_dependent('Grandma.Nurse7@Example.org', 'Gran', 'parent') IS NOT NULL AS registered;
SELECT email, relationship, source FROM membership_api.dependents();
RESET ROLE;
RESET SESSION AUTHORIZATION;

\echo 'The same claims set by a session that is not the gateway are refused:'
SET SESSION AUTHORIZATION mallory;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'claims', false) \g /dev/null
SELECT fixture.try('SELECT * FROM membership_api.dependents()') AS forged;
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', false) \g /dev/null

\echo 'Key rotation: the old key works during the overlap, a revoked key fails at once:'
SELECT membership.rotate_api_key(dataset.org_key('teachers'), '1 day') AS new_key \gset
SELECT fixture.try(format('SELECT membership_api.sync_members(%L, %L, %L)', '[]', 'delta', dataset.org_key('teachers'))) AS old_key,
       fixture.try(format('SELECT membership_api.sync_members(%L, %L, %L)', '[]', 'delta', :'new_key')) AS new_key;
SELECT membership.revoke_api_key(:'new_key') AS revoked;
SELECT fixture.try(format('SELECT membership_api.sync_members(%L, %L, %L)', '[]', 'delta', :'new_key')) AS after_revoke;
