-- Tenant isolation: as each kind of caller of organisation A, nothing of
-- organisation B can be read or changed, through any table or any API
-- function, including from a session that forges claims or settings.
--
-- The table checks walk the catalog, so a table added later is covered at
-- once; a new table only has to get rows of both organisations in the
-- fixture below.  The API checks are per function; test/integration/
-- coverage.sh fails when an API function has no isolation test anywhere.
BEGIN;
SELECT plan(35);
\ir ../fixtures.sql

SELECT fixture.new_org('iso-a') IS NOT NULL AS a, fixture.new_org('iso-b') IS NOT NULL AS b \gset
SELECT fixture.org('iso-a') AS org_a, fixture.org('iso-b') AS org_b \gset
SELECT membership_api.sync_members($$[
    {"external_id": "shared-1", "email": "a1@iso.example", "dependents": [{"email": "a1-dep@iso.example"}]},
    {"external_id": "a-2", "email": "a2@iso.example"}]$$, 'delta', fixture.key('iso-a:org')) IS NOT NULL AS synced_a \gset
SELECT membership_api.sync_members($$[
    {"external_id": "shared-1", "email": "b1@iso.example", "dependents": [{"email": "b1-dep@iso.example"}]},
    {"external_id": "b-2", "email": "b2@iso.example"}]$$, 'delta', fixture.key('iso-b:org')) IS NOT NULL AS synced_b \gset
SELECT fixture.claims('member', 'iso-a', 'shared-1') AS member_a, fixture.claims('org_admin', 'iso-a') AS admin_a,
       fixture.claims('member', 'iso-b', 'shared-1') AS member_b, fixture.claims('org_admin', 'iso-b') AS admin_b,
       (SELECT id FROM membership.dependents WHERE email = 'b1-dep@iso.example') AS dep_b \gset
-- verification usage, an abuse alert and an audit record in each organisation
CREATE TEMPORARY TABLE provider_keys AS
SELECT o.slug, k.id AS key_id, k.organisation_id
FROM membership.api_keys k JOIN membership.organisations o ON o.id = k.organisation_id
WHERE o.slug IN ('iso-a', 'iso-b') AND k.provider_id IS NOT NULL;
SELECT membership.flush_usage(1, array_agg(key_id), array_agg(date_trunc('minute', now())),
                              ARRAY[5, 7], ARRAY[0, 1], ARRAY[4, 6], ARRAY[1, 1]) AS flushed
FROM (SELECT * FROM provider_keys ORDER BY slug) k \gset
INSERT INTO membership.abuse_alerts (organisation_id, api_key_id, kind, started_at, last_seen_at, peak_calls, baseline)
SELECT organisation_id, key_id, 'velocity_spike', now(), now(), 900, 10 FROM provider_keys;
INSERT INTO membership.usage_months (organisation_id, api_key_id, month, allowed)
SELECT organisation_id, key_id, date_trunc('month', now() - interval '3 months'), 1000 FROM provider_keys;
SELECT membership.flush_audit(array_agg(key_id), array_agg(organisation_id), array_agg(now()),
                              array_agg(true), array_agg(false), array_agg(sha256(slug::bytea))) AS audited
FROM provider_keys \gset
-- a consent decision in each organisation
SELECT set_config('request.jwt.claims', :'member_a', true) IS NOT NULL AS claims_a \gset
SELECT membership_api.set_consent('usage_tracking', true) IS NOT NULL AS consent_a \gset
SELECT set_config('request.jwt.claims', :'member_b', true) IS NOT NULL AS claims_b \gset
SELECT membership_api.set_consent('usage_tracking', true) IS NOT NULL AS consent_b \gset
SELECT set_config('request.jwt.claims', '', true) IS NOT NULL AS cleared \gset
-- benefits (issue #6): in each organisation an offer, a tracked use, a
-- category preference, a feed and an article
SELECT membership.set_benefit_category('iso_travel', 'Travel') IS NULL AS category \gset
SELECT membership.create_benefit('iso-a-bank', 'iso_travel', 'Flights for A') AS benefit_a,
       membership.create_benefit('iso-b-bank', 'iso_travel', 'Flights for B') AS benefit_b \gset
SELECT membership.offer_benefit(:'org_a', :benefit_a) IS NULL AS offer_a,
       membership.offer_benefit(:'org_b', :benefit_b) IS NULL AS offer_b \gset
SELECT membership_api.record_benefit_usage(:benefit_a, 'a1@iso.example', api_key => fixture.key('iso-a:provider')) IS NOT NULL AS used_a,
       membership_api.record_benefit_usage(:benefit_b, 'b1@iso.example', api_key => fixture.key('iso-b:provider')) IS NOT NULL AS used_b \gset
SELECT set_config('request.jwt.claims', :'member_a', true) IS NOT NULL AS claims_a \gset
SELECT membership_api.set_category_preference('iso_travel', 'bookmarked') IS NOT NULL AS preference_a \gset
SELECT set_config('request.jwt.claims', :'member_b', true) IS NOT NULL AS claims_b \gset
SELECT membership_api.set_category_preference('iso_travel', 'bookmarked') IS NOT NULL AS preference_b \gset
SELECT set_config('request.jwt.claims', '', true) IS NOT NULL AS cleared \gset
SELECT membership.score_feeds() IS NOT NULL AS scored \gset
SELECT membership_api.save_article('News of A', 'Body', api_key => fixture.key('iso-a:org')) AS article_a,
       membership_api.save_article('News of B', 'Body', api_key => fixture.key('iso-b:org')) AS article_b \gset

-- notifications (issue #5): in each organisation a device, preferences,
-- a budget, push credentials, a notification in the outbox and an audience
-- send (a batch)
SELECT set_config('request.jwt.claims', :'member_a', true) IS NOT NULL AS claims_a \gset
SELECT membership_api.register_device('fcm', 'iso-token-a') IS NOT NULL AS device_a,
       membership_api.set_notification_preferences(muted_categories => '{quiz}') IS NOT NULL AS prefs_a \gset
SELECT set_config('request.jwt.claims', :'member_b', true) IS NOT NULL AS claims_b \gset
SELECT membership_api.register_device('fcm', 'iso-token-b') IS NOT NULL AS device_b,
       membership_api.set_notification_preferences(muted_categories => '{quiz}') IS NOT NULL AS prefs_b \gset
SELECT set_config('request.jwt.claims', '', true) IS NOT NULL AS cleared \gset
SELECT membership.set_notification_budget(:'org_a', 'email', 5) IS NOT NULL AS budget_a,
       membership.set_notification_budget(:'org_b', 'email', 5) IS NOT NULL AS budget_b \gset
INSERT INTO membership.push_credentials (organisation_id, apns_key_id, apns_team_id, apns_private_key, apns_topic)
VALUES (:'org_a', 'KEYA', 'TEAMA', 'not a key', 'org.iso.a'), (:'org_b', 'KEYB', 'TEAMB', 'not a key', 'org.iso.b');
SELECT count(e.status) = 2 AS notified
FROM membership.members m,
     LATERAL membership.enqueue_notification(m.organisation_id, m.id, 'push', 1, 'security', 'Hello', 'World') AS e
WHERE m.email IN ('a1@iso.example', 'b1@iso.example') \gset
SELECT membership.enqueue_notification_audience(:'org_a', '{"all": true}', 'in_app', 2, 'news', 'Hi', 'All') IS NOT NULL AS sent_a,
       membership.enqueue_notification_audience(:'org_b', '{"all": true}', 'in_app', 2, 'news', 'Hi', 'All') IS NOT NULL AS sent_b \gset
-- push worker (issue #5): each organisation's notification delivered to its device
INSERT INTO membership.push_deliveries (organisation_id, notification_id, device_id, status)
SELECT n.organisation_id, n.id, d.id, 'sent'
FROM membership.notifications n JOIN membership.devices d ON d.member_id = n.member_id
WHERE n.organisation_id IN (:'org_a', :'org_b') AND n.channel = 'push';

-- loyalty ledger (issue #4): in each organisation a program with a rule,
-- a partner and an option, an account with earns, a redemption of the
-- option (allocations, a reward code) and a notice
CREATE TEMPORARY TABLE loyalty_orgs AS
SELECT o, slug, membership.find_member(o, 'shared-1') AS m
FROM (VALUES (:'org_a'::uuid, 'iso-a'), (:'org_b'::uuid, 'iso-b')) AS x(o, slug);
SELECT count(membership.add_earn_rule(o, 'Welcome', 'first_purchase', bonus_points => 6000)) AS rules,
       count(membership.set_loyalty_partner(o, slug || '-bank', 1, 1)::text) AS partners,
       count(membership.add_redemption_option(o, 'gift_card', 'Gift card', 100, 100)) AS options
FROM loyalty_orgs \gset
SELECT count(membership.earn_points(o, m, 5000, 'order', 'iso-order')) AS earned FROM loyalty_orgs \gset
SELECT count(membership.redeem_points(o, m, NULL, 'iso-redeem',
                                      option_id => (SELECT id FROM membership.loyalty_options WHERE organisation_id = o)))
       AS redeemed
FROM loyalty_orgs \gset

-- A snapshot of B's data, to compare with after A's callers have acted.
CREATE FUNCTION pg_temp.b_now() RETURNS TABLE (t text, data jsonb) LANGUAGE sql AS $$
    SELECT 'members', to_jsonb(m) - 'updated_at' FROM membership.members m WHERE organisation_id = fixture.org('iso-b')
    UNION ALL
    SELECT 'dependents', to_jsonb(d) FROM membership.dependents d WHERE organisation_id = fixture.org('iso-b')
    UNION ALL
    SELECT 'api_keys', to_jsonb(k) FROM membership.api_keys k WHERE organisation_id = fixture.org('iso-b')
    UNION ALL
    SELECT 'organisations', to_jsonb(o) FROM membership.organisations o WHERE id = fixture.org('iso-b')
$$;
CREATE TEMPORARY TABLE b_before AS SELECT * FROM pg_temp.b_now();
CREATE FUNCTION pg_temp.b_changed() RETURNS SETOF text LANGUAGE sql AS $$
    SELECT 'changed: ' || t || ' ' || data::text FROM (SELECT * FROM b_before EXCEPT SELECT * FROM pg_temp.b_now()) x
    UNION ALL
    SELECT 'new: ' || t || ' ' || data::text FROM (SELECT * FROM pg_temp.b_now() EXCEPT SELECT * FROM b_before) y
$$;

-------------------------------------------------------------------------
-- Every tenant table, through the owner role acting for A.
-------------------------------------------------------------------------
CREATE FUNCTION pg_temp.table_leaks(a uuid, b uuid) RETURNS SETOF text
    LANGUAGE plpgsql AS $$
DECLARE
    t record;
    cols text;
    n bigint;
BEGIN
    FOR t IN
        SELECT c.oid::regclass AS tbl,
               CASE WHEN c.relname = 'organisations' THEN 'id' ELSE 'organisation_id' END AS col
        FROM pg_class c
        WHERE c.relnamespace = 'membership'::regnamespace AND c.relkind IN ('r', 'p')
          AND (c.relname = 'organisations' OR EXISTS (
                SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'organisation_id'))
        ORDER BY 1
    LOOP
        EXECUTE format('SELECT count(*) FROM %s WHERE %I = $1', t.tbl, t.col) INTO n USING b;
        IF n = 0 THEN
            RETURN NEXT t.tbl || ': the fixture has no rows of B to test with';
            CONTINUE;
        END IF;
        EXECUTE format('SELECT count(*) FROM %s WHERE %I = $1', t.tbl, t.col) INTO n USING a;
        IF n = 0 THEN
            RETURN NEXT t.tbl || ': the fixture has no rows of A to test with';
            CONTINUE;
        END IF;

        SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols
        FROM pg_attribute
        WHERE attrelid = t.tbl AND attnum > 0 AND NOT attisdropped AND attgenerated = '';
        EXECUTE format('CREATE TEMPORARY TABLE b_row AS SELECT %s FROM %s WHERE %I = $1 LIMIT 1',
                       cols, t.tbl, t.col) USING b;
        GRANT SELECT ON b_row TO membership_owner;

        SET LOCAL ROLE membership_owner;
        PERFORM membership.set_tenant(a);

        EXECUTE format('SELECT count(*) FROM %s WHERE %I IS DISTINCT FROM $1', t.tbl, t.col) INTO n USING a;
        IF n > 0 THEN RETURN NEXT t.tbl || ': reads rows of another organisation'; END IF;
        EXECUTE format('SELECT count(*) FROM %s', t.tbl) INTO n;
        IF n = 0 THEN RETURN NEXT t.tbl || ': A cannot read its own rows'; END IF;

        EXECUTE format('UPDATE %s SET %I = %I WHERE %I = $1', t.tbl, t.col, t.col, t.col) USING b;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n > 0 THEN RETURN NEXT t.tbl || ': updates rows of B'; END IF;

        EXECUTE format('DELETE FROM %s WHERE %I = $1', t.tbl, t.col) USING b;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n > 0 THEN RETURN NEXT t.tbl || ': deletes rows of B'; END IF;

        BEGIN
            EXECUTE format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM b_row',
                           t.tbl, cols, cols);
            RETURN NEXT t.tbl || ': inserts rows for B';
        EXCEPTION
            WHEN insufficient_privilege THEN
                NULL;
            WHEN OTHERS THEN
                RETURN NEXT t.tbl || ': inserting a row for B was stopped by ' || SQLSTATE || ', not by row-level security';
        END;

        BEGIN
            EXECUTE format('UPDATE %s SET %I = $1 WHERE ctid = (SELECT ctid FROM %s LIMIT 1)',
                           t.tbl, t.col, t.tbl) USING b;
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n > 0 THEN RETURN NEXT t.tbl || ': moves a row of A to B'; END IF;
        EXCEPTION
            WHEN insufficient_privilege THEN
                NULL;
            WHEN OTHERS THEN
                RETURN NEXT t.tbl || ': moving a row to B was stopped by ' || SQLSTATE || ', not by row-level security';
        END;

        RESET ROLE;
        DROP TABLE b_row;
    END LOOP;
END
$$;

SELECT is_empty(format('SELECT pg_temp.table_leaks(%L, %L)', :'org_a', :'org_b'),
    'the owner role acting for A can neither read nor write any row of B, in any tenant table');

-- With no tenant at all, nothing is visible.
CREATE FUNCTION pg_temp.visible_without_tenant() RETURNS SETOF text
    LANGUAGE plpgsql AS $$
DECLARE
    t regclass;
    n bigint;
BEGIN
    SET LOCAL ROLE membership_owner;
    PERFORM membership.set_tenant(NULL);
    FOR t IN
        SELECT c.oid::regclass FROM pg_class c
        WHERE c.relnamespace = 'membership'::regnamespace AND c.relkind IN ('r', 'p') AND c.relrowsecurity
    LOOP
        EXECUTE format('SELECT count(*) FROM %s', t) INTO n;
        IF n > 0 THEN RETURN NEXT t::text; END IF;
    END LOOP;
    RESET ROLE;
END
$$;
SELECT is_empty('SELECT pg_temp.visible_without_tenant()',
    'without a tenant context the owner role sees no row of any tenant table');

-- Client roles cannot touch any table directly.
CREATE FUNCTION pg_temp.client_table_access() RETURNS SETOF text
    LANGUAGE plpgsql AS $$
DECLARE
    t record;
    r text;
    op text;
BEGIN
    FOR t IN
        SELECT c.oid::regclass AS tbl, c.relkind,
               (SELECT quote_ident(a.attname) FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                  AND a.attgenerated = '' AND a.attidentity = ''
                ORDER BY a.attnum LIMIT 1) AS col
        FROM pg_class c
        WHERE c.relnamespace IN ('membership'::regnamespace, 'membership_api'::regnamespace)
          AND c.relkind IN ('r', 'p', 'v', 'm')
    LOOP
        FOREACH r IN ARRAY ARRAY['membership_provider', 'membership_member', 'membership_org_admin',
                                 'membership_platform_admin', 'membership_worker', 'authenticator', 'mallory']
        LOOP
            FOREACH op IN ARRAY ARRAY['SELECT 1 FROM %1$s LIMIT 1', 'DELETE FROM %1$s WHERE false',
                                      'UPDATE %1$s SET %2$s = %2$s WHERE false',
                                      'INSERT INTO %1$s (%2$s) SELECT %2$s FROM %1$s WHERE false']
            LOOP
                BEGIN
                    EXECUTE format('SET LOCAL ROLE %I', r);
                    EXECUTE format(op, t.tbl, t.col);
                    RETURN NEXT r || ' may ' || split_part(op, ' ', 1) || ' ' || t.tbl;
                EXCEPTION
                    WHEN insufficient_privilege THEN
                        NULL;
                    WHEN object_not_in_prerequisite_state OR feature_not_supported THEN
                        -- a view that nobody can change
                        IF t.relkind <> 'v' THEN
                            RETURN NEXT r || ': ' || split_part(op, ' ', 1) || ' ' || t.tbl || ' failed with ' || SQLSTATE;
                        END IF;
                END;
                RESET ROLE;
            END LOOP;
        END LOOP;
    END LOOP;
END
$$;
SELECT is_empty('SELECT pg_temp.client_table_access()',
    'no client role (nor the gateway, nor a stranger) can read or change any table or view');

-------------------------------------------------------------------------
-- membership_api.dependents, register_dependent, remove_dependent
-------------------------------------------------------------------------
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'member_a', true);
SELECT set_eq('SELECT email FROM membership_api.dependents()', ARRAY['a1-dep@iso.example'],
    'dependents() as A''s member lists that member''s dependents only');
SELECT isnt(membership_api.register_dependent('b1-dep@iso.example'), :'dep_b'::uuid,
    'register_dependent as A''s member with the address of B''s dependent makes a new dependent of A');
SELECT throws_ok(format('SELECT membership_api.remove_dependent(%L)', :'dep_b'),
    'PT404', NULL, 'remove_dependent as A''s member cannot find B''s dependent');
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT is_empty('SELECT pg_temp.b_changed()', '... and nothing of B changed');
SELECT is((SELECT removed_at FROM membership.dependents WHERE id = :'dep_b'), NULL,
    'B''s dependent is still registered');

SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'admin_a', true);
SELECT throws_ok('SELECT membership_api.dependents()', '42501', NULL,
    'an organisation administrator is not a member: no dependents()');
RESET ROLE;
RESET SESSION AUTHORIZATION;

-------------------------------------------------------------------------
-- membership_api.sync_members
-------------------------------------------------------------------------
SELECT is(membership_api.sync_members($$[{"external_id": "b-2", "email": "b2-twin@iso.example"}]$$,
                                      'delta', fixture.key('iso-a:org'))->>'inserted', '1',
    'sync_members with A''s key: an external id that B also uses makes a member of A, not a change to B');
SELECT is_empty('SELECT pg_temp.b_changed()', '... and nothing of B changed');

SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'admin_a', true);
SELECT is(membership_api.sync_members('[{"external_id": "a-only"}]', 'full')->>'removed', '3',
    'sync_members as A''s administrator in full mode removes A''s absent members only');
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT is_empty('SELECT pg_temp.b_changed()', '... and nothing of B changed');

SELECT throws_ok(format('SELECT membership_api.sync_members(%L, %L, %L)', '[{"external_id": "b-2"}]', 'delta',
                        fixture.key('iso-a:provider')),
    'PT403', 'provider API keys cannot call this function',
    'sync_members refuses A''s provider key');

-------------------------------------------------------------------------
-- A session that is not the gateway, forging B's claims or settings.
-------------------------------------------------------------------------
SET SESSION AUTHORIZATION mallory;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'member_b', true);
SELECT throws_ok('SELECT membership_api.dependents()', 'PT401', 'JWT claims are not trusted in this session',
    'forged member claims: dependents() refused');
SELECT throws_ok($$SELECT membership_api.register_dependent('x@iso.example')$$, 'PT401', NULL,
    'forged member claims: register_dependent() refused');
SELECT throws_ok(format('SELECT membership_api.remove_dependent(%L)', :'dep_b'), 'PT401', NULL,
    'forged member claims: remove_dependent() refused');
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'admin_b', true);
SELECT throws_ok($$SELECT membership_api.sync_members('[{"external_id": "b-2", "status": "removed"}]')$$,
    'PT401', NULL, 'forged administrator claims: sync_members() refused');
SELECT set_config('request.jwt.claims', '', true);
SELECT set_config('request.headers', format('{"x-api-key": "%s", "x-organisation": "%s"}',
                                            'mk_aaaaaaaa_' || repeat('a', 52), :'org_b'), true);
SELECT throws_ok($$SELECT membership_api.sync_members('[]')$$, 'PT401', 'invalid API key',
    'forged headers without a real key: refused');
SELECT set_config('request.headers', '', true);
SELECT throws_ok(format($$SET membership.org_id = %L$$, :'org_b'), '42602', NULL,
    'no membership.* setting can be invented to name a tenant');
SELECT throws_ok(format($$SELECT set_config('membership.tenant', %L, true)$$, :'org_b'), '42602', NULL,
    '... not even through set_config()');
SELECT throws_ok($$SET membership.gateway_role = 'mallory'$$, '42501', NULL,
    'the gateway role cannot be changed by a client');
SELECT throws_ok(format('SELECT membership.set_tenant(%L)', :'org_b'), '42501', NULL,
    'a client cannot set the tenant context');
SELECT throws_ok(format('SELECT * FROM membership.members WHERE organisation_id = %L', :'org_b'), '42501', NULL,
    'a client cannot read the members table');
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT is_empty('SELECT pg_temp.b_changed()', 'after all of that, nothing of B changed');

-- The gateway itself, without a role switch, has nothing.
SET SESSION AUTHORIZATION authenticator;
SELECT set_config('request.jwt.claims', :'member_b', true);
SELECT throws_ok('SELECT membership_api.dependents()', '42501', NULL,
    'the gateway role itself may call nothing');
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', true);

-------------------------------------------------------------------------
-- Platform functions take an organisation; they are not for clients.
-------------------------------------------------------------------------
SET ROLE membership_org_admin;
SELECT throws_ok(format('SELECT membership.find_member(%L, %L)', :'org_b', 'shared-1'), '42501', NULL,
    'an organisation administrator cannot call platform functions');
RESET ROLE;
SET ROLE membership_provider;
SELECT throws_ok(format('SELECT * FROM membership.api_keys_of(%L)', :'org_b'), '42501', NULL,
    'a provider cannot list keys');
RESET ROLE;
SET ROLE membership_member;
SELECT throws_ok(format('SELECT membership.issue_api_key(%L, NULL)', :'org_b'), '42501', NULL,
    'a member cannot issue keys');
RESET ROLE;

-- Keys of A do not open B: a platform function given A's key acts for A.
SELECT membership.revoke_api_key(fixture.key('iso-a:provider'));
SELECT is_empty('SELECT pg_temp.b_changed()', 'revoking A''s key changes nothing of B');
SELECT is((SELECT revoked_at IS NOT NULL FROM membership.api_keys WHERE prefix = left(fixture.key('iso-a:provider'), 11)),
    true, '... and revokes A''s key');

-------------------------------------------------------------------------
-- membership_api.set_consent, consents
-------------------------------------------------------------------------
SELECT fixture.claims('member', 'iso-b', 'b-2') AS member_b2 \gset
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'member_b2', true);
SELECT is(membership_api.set_consent('marketing', true)->>'marketing', 'true', 'a member of B grants marketing');
SELECT set_config('request.jwt.claims', :'member_a', true);
SELECT is(membership_api.set_consent('personalisation', true)->>'marketing', 'false',
    'set_consent as A''s member: B''s grant is not A''s');
SELECT is_empty($$SELECT * FROM membership_api.consents() WHERE consent = 'marketing'$$,
    'consents() as A''s member shows none of B''s decisions');
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT is((SELECT count(*) FROM membership.consents WHERE organisation_id = :'org_b'), 2::bigint,
    'B keeps exactly its own consents');

SELECT * FROM finish();
ROLLBACK;
