-- Tenant isolation of the loyalty ledger's API (issue #4): as each kind of
-- caller of organisation A (its member, its administrator, its partner's
-- key), nothing of organisation B can be read or changed through any of
-- these functions, and a session that is not the gateway cannot pass for
-- B by forging claims or headers.
BEGIN;
SELECT plan(37);
\ir ../fixtures.sql

SELECT fixture.new_org('li-a') IS NOT NULL AS a, fixture.new_org('li-b') IS NOT NULL AS b \gset
SELECT fixture.org('li-a') AS org_a, fixture.org('li-b') AS org_b \gset
SELECT membership_api.sync_members('[{"external_id": "m1", "email": "m1@li-a.example"}]', 'delta',
                                   fixture.key('li-a:org')) IS NOT NULL AS synced_a,
       membership_api.sync_members('[{"external_id": "m1", "email": "m1@li-b.example"}]', 'delta',
                                   fixture.key('li-b:org')) IS NOT NULL AS synced_b \gset
SELECT membership.find_member(:'org_a', 'm1') AS m_a, membership.find_member(:'org_b', 'm1') AS m_b \gset
SELECT fixture.claims('member', 'li-a', 'm1') AS member_a, fixture.claims('org_admin', 'li-a') AS admin_a,
       fixture.claims('member', 'li-b', 'm1') AS member_b \gset

-- Each organisation: its bank as a partner, an option, points for its
-- member, a redemption of the option and one by the partner.
SELECT membership.set_loyalty_partner(:'org_a', 'li-a-bank', 1, 1)::text AS p_a,
       membership.set_loyalty_partner(:'org_b', 'li-b-bank', 1, 1)::text AS p_b \gset
SELECT membership.add_redemption_option(:'org_a', 'gift_card', 'Card of A', 100, 100) AS option_a,
       membership.add_redemption_option(:'org_b', 'gift_card', 'Card of B', 100, 100) AS option_b \gset
SELECT membership.earn_points(:'org_a', :'m_a', 50000, 'order', 'same-order') AS earned_a,
       membership.earn_points(:'org_b', :'m_b', 90000, 'order', 'same-order') AS earned_b \gset
SELECT membership.redeem_points(:'org_b', :'m_b', NULL, 'member:' || :'m_b' || ':same-req', option_id => :'option_b')
    IS NOT NULL AS redeemed_b \gset
SELECT membership_api.partner_earn(1000, 'same-tx', email => 'm1@li-b.example', api_key => fixture.key('li-b:provider'))
    IS NOT NULL AS partner_b \gset

CREATE FUNCTION pg_temp.b_now() RETURNS TABLE (t text, data jsonb) LANGUAGE sql AS $$
    SELECT 'accounts', to_jsonb(a) FROM membership.loyalty_accounts a WHERE organisation_id = fixture.org('li-b')
    UNION ALL
    SELECT 'ledger', to_jsonb(l) FROM membership.loyalty_ledger l WHERE organisation_id = fixture.org('li-b')
    UNION ALL
    SELECT 'buckets', to_jsonb(b) FROM membership.loyalty_buckets b WHERE organisation_id = fixture.org('li-b')
    UNION ALL
    SELECT 'allocations', to_jsonb(x) FROM membership.loyalty_allocations x WHERE organisation_id = fixture.org('li-b')
    UNION ALL
    SELECT 'rewards', to_jsonb(r) FROM membership.loyalty_rewards r WHERE organisation_id = fixture.org('li-b')
    UNION ALL
    SELECT 'options', to_jsonb(o) FROM membership.loyalty_options o WHERE organisation_id = fixture.org('li-b')
    UNION ALL
    SELECT 'partners', to_jsonb(p) FROM membership.loyalty_partners p WHERE organisation_id = fixture.org('li-b')
    UNION ALL
    SELECT 'notices', to_jsonb(n) FROM membership.loyalty_notices n WHERE organisation_id = fixture.org('li-b')
$$;
CREATE TEMPORARY TABLE b_before AS SELECT * FROM pg_temp.b_now();
CREATE FUNCTION pg_temp.b_changed() RETURNS SETOF text LANGUAGE sql AS $$
    SELECT 'changed: ' || t || ' ' || data::text FROM (SELECT * FROM b_before EXCEPT SELECT * FROM pg_temp.b_now()) x
    UNION ALL
    SELECT 'new: ' || t || ' ' || data::text FROM (SELECT * FROM pg_temp.b_now() EXCEPT SELECT * FROM b_before) y
$$;
SELECT isnt_empty('SELECT * FROM b_before WHERE t = ''rewards''', 'the fixture has a reward of B to protect');

-------------------------------------------------------------------------
-- A's member.
-------------------------------------------------------------------------
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'member_a', true);
SELECT is((membership_api.points() ->> 'balance')::bigint, :earned_a::bigint,
    'points() as A''s member is A''s member''s balance');
SELECT is((SELECT count(*) FROM membership_api.points_history()), 1::bigint,
    'points_history() as A''s member holds A''s member''s one entry only');
SELECT set_eq('SELECT id FROM membership_api.redemption_options()', ARRAY[:'option_a'::uuid],
    'redemption_options() as A''s member lists A''s options only');
SELECT throws_ok(format('SELECT membership_api.redeem(NULL, %L, option_id => %L)', 'r-1', :'option_b'), 'P0002', NULL,
    'redeem() as A''s member cannot redeem B''s option');
SELECT is(membership_api.redeem(100, 'same-req', 1000) ->> 'replayed', 'false',
    'redeem() as A''s member with B''s request id is a new redemption of A''s member');
SELECT is((membership_api.points() ->> 'balance')::bigint, :earned_a::bigint - 100, '... from A''s member''s points');
SELECT throws_ok('SELECT membership_api.partner_earn(100, ''x'', user_id => ''m1'')', '42501', NULL,
    'a member cannot call partner_earn()');
SELECT throws_ok('SELECT membership_api.partner_statement(current_date)', '42501', NULL,
    'a member cannot call partner_statement()');
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT is_empty('SELECT pg_temp.b_changed()', '... and nothing of B changed');

-------------------------------------------------------------------------
-- A's administrator.
-------------------------------------------------------------------------
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'admin_a', true);
SELECT throws_ok('SELECT membership_api.points()', '42501', NULL, 'an administrator cannot call points()');
SELECT throws_ok('SELECT membership_api.redeem(1, ''r'', 10)', '42501', NULL, 'an administrator cannot call redeem()');
RESET ROLE;
RESET SESSION AUTHORIZATION;

-------------------------------------------------------------------------
-- A's partner, with A's provider key.
-------------------------------------------------------------------------
SELECT throws_ok(format('SELECT membership_api.partner_earn(100, %L, email => %L, api_key => %L)',
                        'tx-1', 'm1@li-b.example', fixture.key('li-a:provider')), 'PT404', NULL,
    'partner_earn() with A''s key cannot reach B''s member');
SELECT throws_ok(format('SELECT membership_api.partner_balance(email => %L, api_key => %L)',
                        'm1@li-b.example', fixture.key('li-a:provider')), 'PT404', NULL,
    'partner_balance() with A''s key cannot read B''s member''s points');
SELECT throws_ok(format('SELECT membership_api.partner_redeem(1, %L, email => %L, api_key => %L)',
                        'tx-2', 'm1@li-b.example', fixture.key('li-a:provider')), 'PT404', NULL,
    'partner_redeem() with A''s key cannot spend B''s member''s points');
SELECT is(membership_api.partner_earn(1000, 'same-tx', user_id => 'm1', api_key => fixture.key('li-a:provider'))
          ->> 'points', '10',
    'partner_earn() with A''s key and B''s transaction id earns for A''s member');
SELECT is((membership_api.partner_balance(user_id => 'm1', api_key => fixture.key('li-a:provider')) ->> 'balance')::bigint,
          :earned_a::bigint - 100 + 10, 'partner_balance() with A''s key is A''s member''s balance');
SELECT is(membership_api.partner_redeem(5, 'same-tx', user_id => 'm1', api_key => fixture.key('li-a:provider'))
          ->> 'replayed', 'false', 'partner_redeem() with A''s key spends A''s member''s points');
SELECT is(membership_api.partner_statement(current_date, fixture.key('li-a:provider')) ->> 'partner', 'li-a-bank',
    'partner_statement() with A''s key is A''s line');
SELECT is((membership_api.partner_statement(current_date, fixture.key('li-a:provider')) ->> 'earned_points')::bigint,
          10::bigint, '... counting A''s partner earns only');
SELECT throws_ok(format('SELECT membership_api.partner_statement(current_date, %L)', fixture.key('li-a:org')),
    'PT403', NULL, 'partner_statement() refuses the organisation''s own key');
SELECT throws_ok('SELECT membership_api.points_history()', 'PT403', NULL,
    'points_history() with A''s administrator''s claims still set is refused');
SELECT is_empty('SELECT pg_temp.b_changed()', '... and nothing of B changed');

-------------------------------------------------------------------------
-- A session that is not the gateway, forging B's claims or headers.
-------------------------------------------------------------------------
SET SESSION AUTHORIZATION mallory;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'member_b', true);
SELECT throws_ok('SELECT membership_api.points()', 'PT401', 'JWT claims are not trusted in this session',
    'forged member claims: points() refused');
SELECT throws_ok('SELECT * FROM membership_api.points_history()', 'PT401', NULL,
    'forged member claims: points_history() refused');
SELECT throws_ok('SELECT * FROM membership_api.redemption_options()', 'PT401', NULL,
    'forged member claims: redemption_options() refused');
SELECT throws_ok('SELECT membership_api.redeem(10, ''forged'', 1000)', 'PT401', NULL,
    'forged member claims: redeem() refused');
SELECT set_config('request.jwt.claims', '', true);
SET ROLE membership_provider;
SELECT set_config('request.headers', format('{"x-api-key": "%s"}', 'mk_aaaaaaaa_' || repeat('a', 52)), true);
SELECT throws_ok('SELECT membership_api.partner_earn(100, ''f-1'', user_id => ''m1'')', 'PT401', 'invalid API key',
    'forged headers: partner_earn() refused');
SELECT throws_ok('SELECT membership_api.partner_balance(user_id => ''m1'')', 'PT401', NULL,
    'forged headers: partner_balance() refused');
SELECT throws_ok('SELECT membership_api.partner_redeem(1, ''f-2'', user_id => ''m1'')', 'PT401', NULL,
    'forged headers: partner_redeem() refused');
SELECT throws_ok('SELECT membership_api.partner_statement(current_date)', 'PT401', NULL,
    'forged headers: partner_statement() refused');
SELECT set_config('request.headers', '', true);
RESET ROLE;
RESET SESSION AUTHORIZATION;
-- The batch's internals are the owner's only: no role earns a batch of
-- another organisation (or skips the checks) through them.
SELECT is_empty(
    $$SELECT r.rolname || ' ' || f FROM unnest(ARRAY['membership.loyalty_earn_events(uuid, membership.loyalty_batch_event[])',
                                                  'membership.loyalty_int8_or_null(text)',
                                                  'membership.loyalty_uuid_or_null(text)']) f,
             pg_roles r
      WHERE r.rolname LIKE 'membership\_%' AND r.rolname <> 'membership_owner'
        AND has_function_privilege(r.oid, f::regprocedure, 'EXECUTE')$$,
    'only the owner may execute loyalty_earn_events() and the batch''s readers');
SET ROLE membership_platform_admin;
SELECT throws_ok(format('SELECT * FROM membership.loyalty_earn_events(%L, ARRAY[]::membership.loyalty_batch_event[])',
                        :'org_b'),
                 '42501', NULL, 'the platform administrator cannot call loyalty_earn_events()');
RESET ROLE;
SET ROLE membership_org_admin;
SELECT throws_ok('SELECT membership.loyalty_int8_or_null(''1'')', '42501', NULL,
                 'an organisation administrator cannot call loyalty_int8_or_null()');
SELECT throws_ok('SELECT membership.loyalty_uuid_or_null(''1'')', '42501', NULL,
                 'an organisation administrator cannot call loyalty_uuid_or_null()');
RESET ROLE;
SELECT is_empty('SELECT pg_temp.b_changed()', 'after all of that, nothing of B changed');
SELECT is_empty('SELECT * FROM membership.reconcile_ledger()', 'and every account still reconciles');

SELECT * FROM finish();
ROLLBACK;
