-- Tenant isolation of verification: a provider key of organisation A
-- learns nothing about organisation B's members, and an administrator of A
-- sees only A's usage and alerts.
BEGIN;
SELECT plan(15);
\ir ../fixtures.sql

SELECT fixture.new_org('viso-a') IS NOT NULL AS a, fixture.new_org('viso-b') IS NOT NULL AS b \gset
SELECT membership_api.sync_members('[{"external_id": "a-1", "email": "only-a@viso.example"}]',
                                   'delta', fixture.key('viso-a:org')) IS NOT NULL AS synced_a \gset
SELECT membership_api.sync_members($$[
    {"external_id": "b-1", "email": "only-b@viso.example", "dependents": [{"email": "b-dep@viso.example"}]},
    {"external_id": "a-1", "email": "twin@viso.example", "status": "suspended"}]$$,
    'delta', fixture.key('viso-b:org')) IS NOT NULL AS synced_b \gset

-- verify_member
SET ROLE membership_provider;
SELECT is(membership_api.verify_member('only-b@viso.example', NULL, fixture.key('viso-a:provider')),
          '{"verified": false}', 'A''s key does not verify B''s member by email');
SELECT is(membership_api.verify_member('b-dep@viso.example', NULL, fixture.key('viso-a:provider')),
          '{"verified": false}', '... nor B''s dependent');
SELECT is(membership_api.verify_member(NULL, 'b-1', fixture.key('viso-a:provider')),
          '{"verified": false}', '... nor B''s member by user_id');
SELECT is(membership_api.verify_member(NULL, 'a-1', fixture.key('viso-a:provider'))->>'verified',
          'true', 'A''s key verifies A''s member a-1 (B''s a-1 is suspended: no cross-talk)');
SELECT is(membership_api.verify_member('only-b@viso.example', NULL, fixture.key('viso-b:provider'))->>'verified',
          'true', 'B''s key does verify B''s member');
SELECT throws_ok(format('SELECT membership_api.verify_member(%L, NULL, %L)', 'only-a@viso.example',
                        fixture.key('viso-a:org')),
    'PT403', 'organisation API keys cannot verify members', 'an organisation key cannot verify');
RESET ROLE;

-- forged gateway claims give a provider nothing
SELECT fixture.claims('org_admin', 'viso-b') AS admin_b \gset
SET SESSION AUTHORIZATION mallory;
SET ROLE membership_provider;
SELECT set_config('request.jwt.claims', :'admin_b', true);
SELECT throws_ok($$SELECT membership_api.verify_member('only-b@viso.example')$$, 'PT401', 'no API key supplied',
    'claims are no substitute for a provider key');
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', true);

-- usage_report and abuse_alerts for organisation administrators
SELECT membership.flush_usage(1, array_agg(k.id ORDER BY o.slug), array_agg(date_trunc('minute', now())),
                              ARRAY[10, 20], ARRAY[1, 2], ARRAY[8, 15], ARRAY[2, 5])
FROM membership.api_keys k JOIN membership.organisations o ON o.id = k.organisation_id
WHERE o.slug IN ('viso-a', 'viso-b') AND k.provider_id IS NOT NULL;
INSERT INTO membership.abuse_alerts (organisation_id, api_key_id, kind, started_at, last_seen_at, peak_calls, baseline)
SELECT k.organisation_id, k.id, 'enumeration', now(), now(), 500, 1
FROM membership.api_keys k JOIN membership.organisations o ON o.id = k.organisation_id
WHERE o.slug = 'viso-b' AND k.provider_id IS NOT NULL;

SELECT fixture.claims('org_admin', 'viso-a') AS admin_a \gset
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'admin_a', true);
SELECT results_eq($$SELECT provider, allowed FROM membership_api.usage_report(current_date - 40, current_date + 1)$$,
    $$VALUES ('viso-a-bank', 10::bigint)$$, 'usage_report as A''s administrator shows A''s usage only');
SELECT is_empty('SELECT * FROM membership_api.abuse_alerts()', 'abuse_alerts as A''s administrator shows none of B''s');
RESET ROLE;
RESET SESSION AUTHORIZATION;

SET SESSION AUTHORIZATION mallory;
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'admin_b', true);
SELECT throws_ok('SELECT * FROM membership_api.usage_report(current_date - 40, current_date + 1)', 'PT401', NULL,
    'forged administrator claims: usage_report refused');
SELECT throws_ok('SELECT * FROM membership_api.abuse_alerts()', 'PT401', NULL,
    'forged administrator claims: abuse_alerts refused');
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', true);

-- the platform's view of the audit is per organisation
SELECT membership.flush_audit(array_agg(k.id), array_agg(k.organisation_id), array_agg(now()), array_agg(true),
                              array_agg(false), array_agg(sha256(o.slug::bytea)))
FROM membership.api_keys k JOIN membership.organisations o ON o.id = k.organisation_id
WHERE o.slug IN ('viso-a', 'viso-b') AND k.provider_id IS NOT NULL;
SELECT fixture.org('viso-a') AS viso_a \gset
SET ROLE membership_platform_admin;
SELECT results_eq(format('SELECT provider, subject_hash FROM membership.verification_audit_of(%L, now() - interval ''1 hour'', now() + interval ''1 hour'')',
                         :'viso_a'),
                  $$VALUES ('viso-a-bank', sha256('viso-a'::bytea))$$,
                  'verification_audit_of(A) shows A''s audit records only');
RESET ROLE;

-- the flusher's functions and the monitoring functions are not for clients
SET ROLE membership_provider;
SELECT throws_ok('SELECT membership.flush_usage(1, ''{}'', ''{}'', ''{}'', ''{}'', ''{}'', ''{}'')', '42501', NULL,
    'a provider cannot write usage');
SELECT throws_ok('SELECT * FROM membership.read_verification_counters()', '42501', NULL,
    'a provider cannot read the live counters');
RESET ROLE;
SET ROLE membership_org_admin;
SELECT throws_ok('SELECT * FROM membership.metering_status', '42501', NULL,
    'an organisation administrator cannot read the metering status view');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
