-- Members manage their own dependents through the gateway.
SELECT fixture.new_org('dep-a') IS NOT NULL;
SELECT membership_api.sync_members($$[
    {"external_id": "d1", "email": "d1@dep.example", "dependents": [{"email": "synced@dep.example", "relationship": "child"}]},
    {"external_id": "d2", "email": "d2@dep.example", "status": "suspended"},
    {"external_id": "d3", "email": "d3@dep.example"}
]$$, 'delta', fixture.key('dep-a:org'));
SELECT fixture.claims('member', 'dep-a', 'd1') AS d1, fixture.claims('member', 'dep-a', 'd2') AS d2,
       fixture.claims('member', 'dep-a', 'd3') AS d3 \gset

SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'d1', false) IS NOT NULL;
SELECT membership_api.register_dependent(' Partner@Dep.example ', 'Pat', 'partner') AS partner \gset
-- registering the same address again returns the same dependent
SELECT membership_api.register_dependent('partner@dep.example') = :'partner' AS idempotent;
SELECT email, name, relationship, source FROM membership_api.dependents() ORDER BY email;
SELECT fixture.try($$SELECT membership_api.register_dependent(NULL)$$);
SELECT fixture.try($$SELECT membership_api.register_dependent('not-an-email')$$);
SELECT fixture.try($$SELECT membership_api.register_dependent('x@dep.example', 'X', 'cousin')$$);
SELECT fixture.try($$SELECT membership_api.register_dependent('x@dep.example', repeat('n', 201))$$);
-- synced dependents are the organisation's to change
SELECT fixture.try(format('SELECT membership_api.remove_dependent(%L)',
                          (SELECT id FROM membership_api.dependents() WHERE source = 'sync')));
SELECT fixture.try($$SELECT membership_api.remove_dependent('00000000-0000-0000-0000-000000000000')$$);
SELECT fixture.try($$SELECT membership_api.remove_dependent(NULL)$$);

-- another member may list the same person (their own dependent, a new
-- row), but cannot see or remove the first member's
SELECT set_config('request.jwt.claims', :'d3', false) IS NOT NULL;
SELECT membership_api.register_dependent('partner@dep.example') <> :'partner'::uuid AS own_row;
SELECT fixture.try(format('SELECT membership_api.remove_dependent(%L)', :'partner'));
SELECT count(*) AS d3_sees FROM membership_api.dependents();
-- at most 10 dependents per member
SELECT count(membership_api.register_dependent('kid' || i || '@dep.example', NULL, 'child')) FROM generate_series(1, 9) AS i;
SELECT fixture.try($$SELECT membership_api.register_dependent('kid11@dep.example')$$);

-- the limit holds whoever adds the dependent: d3 has 10, synced ones count too
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT fixture.try($$SELECT membership_api.sync_members('[{"external_id": "d3", "dependents": [{"email": "extra@dep.example"}]}]', 'delta', fixture.key('dep-a:org'))$$);
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;

-- a member who is not active cannot register
SELECT set_config('request.jwt.claims', :'d2', false) IS NOT NULL;
SELECT fixture.try($$SELECT membership_api.register_dependent('x@dep.example')$$);

-- removal by the member who registered it
SELECT set_config('request.jwt.claims', :'d1', false) IS NOT NULL;
SELECT membership_api.remove_dependent(:'partner') AS removed, membership_api.remove_dependent(:'partner') AS removed_again;
SELECT email FROM membership_api.dependents() ORDER BY email;

-- keys are not members
RESET ROLE;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL;
SET ROLE membership_provider;
SELECT fixture.try(format('SELECT membership_api.register_dependent(%L, NULL, %L)', 'x@dep.example', 'other'));
RESET ROLE;
RESET SESSION AUTHORIZATION;
