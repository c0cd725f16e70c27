-- Tenant isolation of the notifications API (issue #5): as each kind of
-- caller of organisation A, nothing of organisation B can be read or
-- changed through any of these functions, and a session that is not the
-- gateway cannot pass for B by forging claims or headers.
BEGIN;
SELECT plan(46);
\ir ../fixtures.sql

SELECT fixture.new_org('ni-a') IS NOT NULL AS a, fixture.new_org('ni-b') IS NOT NULL AS b \gset
SELECT fixture.org('ni-a') AS org_a, fixture.org('ni-b') AS org_b \gset
SELECT membership_api.sync_members('[{"external_id": "m1", "email": "m1@ni-a.example", "membership_tier": "full"}]',
                                   'delta', fixture.key('ni-a:org')) IS NOT NULL AS synced_a,
       membership_api.sync_members('[{"external_id": "m1", "email": "m1@ni-b.example", "membership_tier": "full"},
                                     {"external_id": "only-b", "email": "ob@ni-b.example", "membership_tier": "full"}]',
                                   'delta', fixture.key('ni-b:org')) IS NOT NULL AS synced_b \gset
SELECT fixture.claims('member', 'ni-a', 'm1') AS member_a, fixture.claims('org_admin', 'ni-a') AS admin_a,
       fixture.claims('member', 'ni-b', 'm1') AS member_b, fixture.claims('org_admin', 'ni-b') AS admin_b \gset
SELECT membership.find_member(:'org_a', 'm1') AS m_a, membership.find_member(:'org_b', 'm1') AS m_b \gset

-- B's member has a device, preferences and marketing consent; B has an
-- in-app notification delivered, a push queued and a promotion pending.
SELECT set_config('request.jwt.claims', :'member_b', true) IS NOT NULL AS claims \gset
SELECT membership_api.register_device('apns', 'b-device') IS NOT NULL AS d,
       membership_api.set_notification_preferences(muted_categories => '{quiz}') IS NOT NULL AS p,
       membership_api.set_consent('marketing', true) IS NOT NULL AS c \gset
SELECT set_config('request.jwt.claims', :'member_a', true) IS NOT NULL AS claims \gset
SELECT membership_api.register_device('apns', 'a-device') IS NOT NULL AS d,
       membership_api.set_consent('marketing', true) IS NOT NULL AS c \gset
SELECT set_config('request.jwt.claims', '', true) IS NOT NULL AS cleared \gset
SELECT membership_api.send_notification('m1', 'in_app', 2, 'news', 'For B', 'Only B',
                                        api_key => fixture.key('ni-b:org')) ->> 'notification' AS b_inbox,
       membership_api.send_notification('m1', 'push', 1, 'security', 'B push', 'Only B', idempotency_key => 'b-key',
                                        api_key => fixture.key('ni-b:org')) ->> 'notification' AS b_push,
       membership_api.send_notification('m1', 'in_app', 2, 'news', 'For A', 'Only A',
                                        api_key => fixture.key('ni-a:org')) ->> 'notification' AS a_inbox \gset
SELECT membership_api.send_promotion('{"all": true}', 'B deal', 'For B', api_key => fixture.key('ni-b:provider'))
           ->> 'promotion' AS promo_b,
       membership_api.send_promotion('{"all": true}', 'A deal', 'For A', api_key => fixture.key('ni-a:provider'))
           ->> 'promotion' AS promo_a \gset

-- A snapshot of B's data in the notification tables.
CREATE FUNCTION pg_temp.b_now() RETURNS TABLE (t text, data jsonb) LANGUAGE sql AS $$
    SELECT 'devices', to_jsonb(d) FROM membership.devices d WHERE organisation_id = fixture.org('ni-b')
    UNION ALL
    SELECT 'notification_preferences', to_jsonb(p) FROM membership.notification_preferences p WHERE organisation_id = fixture.org('ni-b')
    UNION ALL
    SELECT 'notification_budgets', to_jsonb(b) FROM membership.notification_budgets b WHERE organisation_id = fixture.org('ni-b')
    UNION ALL
    SELECT 'notifications', to_jsonb(n) FROM membership.notifications n WHERE organisation_id = fixture.org('ni-b')
    UNION ALL
    SELECT 'notification_batches', to_jsonb(b) FROM membership.notification_batches b WHERE organisation_id = fixture.org('ni-b')
$$;
CREATE TEMPORARY TABLE b_before AS SELECT * FROM pg_temp.b_now();
CREATE FUNCTION pg_temp.b_changed() RETURNS SETOF text LANGUAGE sql AS $$
    SELECT 'changed: ' || t || ' ' || data::text FROM (SELECT * FROM b_before EXCEPT SELECT * FROM pg_temp.b_now()) x
    UNION ALL
    SELECT 'new: ' || t || ' ' || data::text FROM (SELECT * FROM pg_temp.b_now() EXCEPT SELECT * FROM b_before) y
$$;
SELECT isnt_empty('SELECT * FROM b_before WHERE t = ''notifications''', 'the fixture has notifications of B to protect');

-------------------------------------------------------------------------
-- A's member.
-------------------------------------------------------------------------
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'member_a', true);
SELECT set_eq('SELECT token FROM membership_api.devices()', ARRAY['a-device'],
    'devices() as A''s member lists A''s member''s devices only');
SELECT is(membership_api.unregister_device('b-device'), false,
    'unregister_device() as A''s member cannot deactivate B''s token');
SELECT isnt(membership_api.register_device('apns', 'b-device'), NULL,
    'register_device() as A''s member with B''s token registers a device of A''s own');
SELECT is(membership_api.notification_preferences() -> 'muted_categories', '[]'::jsonb,
    'notification_preferences() as A''s member shows A''s member''s, not B''s');
SELECT is(membership_api.set_notification_preferences(opted_out_channels => '{sms}') -> 'opted_out_channels',
    '["sms"]'::jsonb, 'set_notification_preferences() as A''s member sets that member''s preferences');
SELECT set_eq('SELECT title FROM membership_api.notifications()', ARRAY['For A'],
    'notifications() as A''s member shows A''s member''s inbox only');
SELECT throws_ok($$SELECT membership_api.send_notification('m1', 'push', 1, 'security', 't', 'b')$$, '42501', NULL,
    'a member cannot send notifications');
SELECT throws_ok('SELECT * FROM membership_api.notification_stats()', '42501', NULL,
    'a member cannot read delivery statistics');
SELECT throws_ok(format('SELECT membership_api.approve_notification(%s)', :promo_a), '42501', NULL,
    'a member cannot approve promotions');
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT is_empty('SELECT pg_temp.b_changed()', '... and nothing of B changed');

-------------------------------------------------------------------------
-- A's administrator and A's keys.
-------------------------------------------------------------------------
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'admin_a', true);
SELECT throws_ok($$SELECT membership_api.send_notification('only-b', 'push', 1, 'security', 't', 'b')$$, 'PT404', NULL,
    'send_notification() as A''s administrator cannot reach a member of B');
SELECT is(membership_api.send_notification('m1', 'push', 1, 'security', 't', 'b') ->> 'status', 'queued',
    'send_notification() as A''s administrator to "m1" notifies A''s "m1"');
SELECT is(membership_api.send_notification('m1', 'push', 1, 'security', 't', 'b', idempotency_key => 'b-key')
              ->> 'notification' = :'b_push', false,
    'send_notification() as A''s administrator with B''s idempotency key does not get B''s notification');
SELECT is((membership_api.send_notification_audience('{"all": true}', 'in_app', 2, 'news', 'All of A', 'x')
              ->> 'recipients')::integer, 1,
    'send_notification_audience() as A''s administrator reaches A''s one member, none of B''s');
SELECT set_eq('SELECT promotion FROM membership_api.pending_promotions()', ARRAY[:promo_a::bigint],
    'pending_promotions() as A''s administrator lists A''s only');
SELECT throws_ok(format('SELECT membership_api.approve_notification(%s)', :promo_b), 'PT404', NULL,
    'approve_notification() as A''s administrator cannot approve B''s promotion');
SELECT throws_ok(format('SELECT membership_api.reject_notification(%s)', :promo_b), 'PT404', NULL,
    'reject_notification() as A''s administrator cannot reject B''s promotion');
SELECT is((SELECT sum(notifications) FROM membership_api.notification_stats() WHERE channel = 'in_app'), 2::numeric,
    'notification_stats() as A''s administrator counts A''s notifications only');
SELECT throws_ok('SELECT membership_api.notifications()', '42501', NULL,
    'an administrator has no inbox');
SELECT throws_ok($$SELECT membership_api.register_device('fcm', 'x')$$, '42501', NULL,
    'an administrator cannot register devices');
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT is_empty('SELECT pg_temp.b_changed()', '... and nothing of B changed');

SELECT throws_ok(format('SELECT membership_api.approve_notification(%s, %L)', :promo_b, fixture.key('ni-a:org')),
    'PT404', NULL, 'approve_notification() with A''s key cannot approve B''s promotion');
SELECT throws_ok(format('SELECT membership_api.reject_notification(%s, %L)', :promo_b, fixture.key('ni-a:org')),
    'PT404', NULL, 'reject_notification() with A''s key cannot reject B''s promotion');
SELECT is((membership_api.approve_notification(:promo_a, fixture.key('ni-a:org')) ->> 'recipients')::integer, 1,
    'approve_notification() with A''s key approves A''s promotion, to A''s one member');
SELECT is((SELECT count(*) FROM membership_api.pending_promotions(fixture.key('ni-a:org'))), 0::bigint,
    'pending_promotions() with A''s key shows none of B''s');
SELECT is((SELECT count(*) FROM membership_api.notification_stats(api_key => fixture.key('ni-a:org'))
           WHERE reason = 'awaiting_approval'), 0::bigint,
    'notification_stats() with A''s key does not count B''s pending promotion');
SELECT throws_ok($$SELECT membership_api.send_notification('only-b', 'push', 1, 'security', 't', 'b', api_key => $$
                 || quote_literal(fixture.key('ni-a:org')) || ')', 'PT404', NULL,
    'send_notification() with A''s key cannot reach a member of B');
SELECT throws_ok(format('SELECT membership_api.send_notification(%L, %L, 1, %L, %L, %L, api_key => %L)',
                        'm1', 'push', 'security', 't', 'b', fixture.key('ni-a:provider')), 'PT403', NULL,
    'send_notification() with A''s provider key is refused');
SELECT is((membership_api.send_notification_audience('{"tier": "full"}', 'sms', 2, 'news', 't', 'b',
                                                     api_key => fixture.key('ni-a:org')) ->> 'recipients')::integer, 1,
    'send_notification_audience() with A''s key reaches A''s member only');
SELECT isnt(membership_api.send_promotion('{"all": true}', 'A again', 'x', api_key => fixture.key('ni-a:provider'))
                ->> 'promotion', :'promo_b', 'send_promotion() with A''s provider key makes a promotion of A');
SELECT throws_ok(format('SELECT membership_api.approve_notification(%s, %L)', :promo_b, fixture.key('ni-a:provider')),
    'PT403', NULL, 'approve_notification() with a provider key is refused');
SELECT throws_ok(format('SELECT * FROM membership_api.pending_promotions(%L)', fixture.key('ni-a:provider')),
    'PT403', NULL, 'pending_promotions() with a provider key is refused');
SELECT is_empty('SELECT pg_temp.b_changed()', '... and nothing of B changed');

-------------------------------------------------------------------------
-- A session that is not the gateway, forging B's claims or headers.
-------------------------------------------------------------------------
SET SESSION AUTHORIZATION mallory;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'member_b', true);
SELECT throws_ok('SELECT * FROM membership_api.devices()', 'PT401', 'JWT claims are not trusted in this session',
    'forged member claims: devices() refused');
SELECT throws_ok($$SELECT membership_api.register_device('fcm', 'evil')$$, 'PT401', NULL,
    'forged member claims: register_device() refused');
SELECT throws_ok($$SELECT membership_api.unregister_device('b-device')$$, 'PT401', NULL,
    'forged member claims: unregister_device() refused');
SELECT throws_ok('SELECT membership_api.notification_preferences()', 'PT401', NULL,
    'forged member claims: notification_preferences() refused');
SELECT throws_ok($$SELECT membership_api.set_notification_preferences(opted_out_channels => '{push}')$$, 'PT401', NULL,
    'forged member claims: set_notification_preferences() refused');
SELECT throws_ok('SELECT * FROM membership_api.notifications()', 'PT401', NULL,
    'forged member claims: notifications() refused');
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'admin_b', true);
SELECT throws_ok($$SELECT membership_api.send_notification('m1', 'push', 1, 'security', 't', 'b')$$, 'PT401', NULL,
    'forged administrator claims: send_notification() refused');
SELECT throws_ok($$SELECT membership_api.send_notification_audience('{"all": true}', 'push', 1, 'security', 't', 'b')$$,
    'PT401', NULL, 'forged administrator claims: send_notification_audience() refused');
SELECT throws_ok(format('SELECT membership_api.approve_notification(%s)', :promo_b), 'PT401', NULL,
    'forged administrator claims: approve_notification() refused');
SELECT throws_ok('SELECT * FROM membership_api.notification_stats()', 'PT401', NULL,
    'forged administrator claims: notification_stats() refused');
SELECT set_config('request.jwt.claims', '', true);
SET ROLE membership_provider;
SELECT set_config('request.headers', format('{"x-api-key": "%s"}', 'mk_aaaaaaaa_' || repeat('a', 52)), true);
SELECT throws_ok($$SELECT membership_api.send_promotion('{"all": true}', 't', 'b')$$, 'PT401', 'invalid API key',
    'forged headers without a real key: send_promotion() refused');
SELECT set_config('request.headers', '', true);
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT is_empty('SELECT pg_temp.b_changed()', 'after all of that, nothing of B changed');

SELECT * FROM finish();
ROLLBACK;
