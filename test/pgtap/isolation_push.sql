-- Tenant isolation of the push worker's side (issue #5): no client role,
-- whatever claims or headers it sets, can read the per-device delivery log
-- or the credentials, or call the worker's functions; the extension's
-- owner role acting for organisation A sees and changes none of B's
-- deliveries; B's rows are unchanged afterwards.  (Every tenant table,
-- push_deliveries included, is also walked by isolation.sql.)
BEGIN;
SELECT plan(24);
\ir ../fixtures.sql

SELECT fixture.new_org('pi-a') IS NOT NULL AS a, fixture.new_org('pi-b') IS NOT NULL AS b \gset
SELECT fixture.org('pi-a') AS org_a, fixture.org('pi-b') AS org_b \gset
SELECT membership_api.sync_members('[{"external_id": "m1", "email": "m1@pi-a.example"}]', 'delta', fixture.key('pi-a:org')) IS NOT NULL AS s1,
       membership_api.sync_members('[{"external_id": "m1", "email": "m1@pi-b.example"}]', 'delta', fixture.key('pi-b:org')) IS NOT NULL AS s2 \gset
SELECT fixture.claims('member', 'pi-a', 'm1') AS member_a, fixture.claims('org_admin', 'pi-a') AS admin_a,
       fixture.claims('member', 'pi-b', 'm1') AS member_b, fixture.claims('org_admin', 'pi-b') AS admin_b,
       fixture.claims('platform_admin', 'pi-b') AS platform_b \gset
INSERT INTO membership.devices (organisation_id, member_id, platform, token)
SELECT organisation_id, id, 'fcm', 'pi-token-' || email FROM membership.members WHERE organisation_id IN (:'org_a', :'org_b');
INSERT INTO membership.push_credentials (organisation_id, apns_key_id, apns_team_id, apns_private_key, apns_topic)
VALUES (:'org_a', 'KA', 'TA', 'secret of A', 'pi.a'), (:'org_b', 'KB', 'TB', 'secret of B', 'pi.b');
INSERT INTO membership.notifications (organisation_id, member_id, channel, priority, category, title, body,
                                      sender, status, due_at)
SELECT organisation_id, id, 'push', 2, 'news', 'Hello ' || email, 'World', 'organisation', 'sent', now()
FROM membership.members WHERE organisation_id IN (:'org_a', :'org_b');
INSERT INTO membership.push_deliveries (organisation_id, notification_id, device_id, status)
SELECT n.organisation_id, n.id, d.id, 'sent'
FROM membership.notifications n JOIN membership.devices d ON d.member_id = n.member_id
WHERE n.organisation_id IN (:'org_a', :'org_b');
CREATE TEMPORARY TABLE b_before AS
SELECT to_jsonb(pd) AS row FROM membership.push_deliveries pd WHERE organisation_id = :'org_b';
GRANT SELECT ON b_before TO PUBLIC;

CREATE FUNCTION pg_temp.rows_changed(stmt text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE stmt;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- The owner role acting for A.
SET LOCAL ROLE membership_owner;
SELECT membership.set_tenant(:'org_a') IS NULL AS tenant \gset
SELECT is((SELECT count(*) FROM membership.push_deliveries WHERE organisation_id = :'org_b'), 0::bigint,
          'the owner role acting for A reads none of B''s deliveries');
SELECT is((SELECT count(*) FROM membership.push_deliveries), 1::bigint, 'and reads A''s own');
SELECT is(pg_temp.rows_changed(format('UPDATE membership.push_deliveries SET status = %L WHERE organisation_id = %L',
                                      'failed', :'org_b')), 0::bigint, 'it updates none of B''s deliveries');
SELECT is(pg_temp.rows_changed(format('DELETE FROM membership.push_deliveries WHERE organisation_id = %L', :'org_b')),
          0::bigint, 'it deletes none of B''s deliveries');
SELECT is((SELECT count(*) FROM membership.push_credentials), 1::bigint, 'it reads only A''s push credentials');
RESET ROLE;

-- Client roles, through the gateway with claims of B, and from a session
-- that is not the gateway with forged claims and headers.
CREATE FUNCTION pg_temp.denied(stmt text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN false;
EXCEPTION WHEN insufficient_privilege THEN
    RETURN true;
END
$$;
GRANT EXECUTE ON FUNCTION pg_temp.denied(text) TO PUBLIC;

SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'member_a', true) IS NOT NULL AS c \gset
SELECT ok(pg_temp.denied('SELECT count(*) FROM membership.push_deliveries'), 'a member of A cannot read the delivery log');
SELECT ok(pg_temp.denied('SELECT count(*) FROM membership.push_credentials'), 'nor the push credentials');
SELECT ok(pg_temp.denied('SELECT membership.push_claim(10, 60, 5)'), 'nor claim notifications');
SELECT ok(pg_temp.denied('SELECT membership.push_record(''{}'', ''{}'', ''{}'', ''{}'', ''{}'', 5)'), 'nor record results');
SELECT ok(pg_temp.denied('SELECT membership.push_worker_plans()'), 'nor read the workers'' plans');
RESET ROLE;
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'admin_b', true) IS NOT NULL AS c \gset
SELECT ok(pg_temp.denied('SELECT count(*) FROM membership.push_deliveries'), 'an administrator (B''s claims) cannot read the delivery log');
SELECT ok(pg_temp.denied('SELECT count(*) FROM membership.push_credentials'), 'nor the push credentials');
SELECT ok(pg_temp.denied('SELECT membership.push_claim(10, 60, 5)'), 'nor claim notifications');
SELECT ok(pg_temp.denied('SELECT membership.push_next_wake()'), 'nor plan the worker''s wake-up');
RESET ROLE;
RESET SESSION AUTHORIZATION;

SET SESSION AUTHORIZATION mallory;
SET ROLE membership_provider;
SELECT set_config('request.jwt.claims', :'platform_b', true) IS NOT NULL AS c,
       set_config('request.headers', json_build_object('x-api-key', fixture.key('pi-b:org'))::text, true) IS NOT NULL AS h \gset
SELECT ok(pg_temp.denied('SELECT count(*) FROM membership.push_deliveries'), 'a provider role from a non-gateway session with forged platform claims cannot read the delivery log');
SELECT ok(pg_temp.denied('SELECT count(*) FROM membership.push_credentials'), 'nor the push credentials');
SELECT ok(pg_temp.denied('SELECT membership.push_claim(10, 60, 5)'), 'nor claim notifications');
SELECT ok(pg_temp.denied('UPDATE membership.devices SET active = true'), 'nor revive devices');
SELECT ok(pg_temp.denied('SELECT membership.push_worker_plans()'), 'nor read the workers'' plans');
SELECT throws_ok($$SELECT set_config('membership.push_fcm_url', 'https://evil.example', false)$$, '55P02', NULL,
                 'nor point the worker elsewhere');
RESET ROLE;
SET ROLE membership_org_admin;
SELECT ok(pg_temp.denied('SELECT count(*) FROM membership.push_deliveries'), 'an administrator role from a non-gateway session cannot read the delivery log');
SELECT ok(pg_temp.denied('SELECT membership.push_record(''{}'', ''{}'', ''{}'', ''{}'', ''{}'', 5)'), 'nor record results');
RESET ROLE;
RESET SESSION AUTHORIZATION;

SELECT is((SELECT count(*) FROM b_before), 1::bigint, 'B had a delivery to compare');
SELECT is_empty($$SELECT row FROM b_before EXCEPT SELECT to_jsonb(pd) FROM membership.push_deliveries pd
                  WHERE organisation_id = fixture.org('pi-b')$$, 'B''s deliveries are unchanged');

SELECT * FROM finish();
ROLLBACK;
