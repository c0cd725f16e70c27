-- Tenant isolation of the benefits API (issue #6): as each kind of caller
-- of organisation A, nothing of organisation B can be read or changed
-- through any of these functions, and a session that is not the gateway
-- cannot pass for B by forging claims or headers.
BEGIN;
SELECT plan(40);
\ir ../fixtures.sql

SELECT fixture.new_org('bi-a') IS NOT NULL AS a, fixture.new_org('bi-b') IS NOT NULL AS b \gset
SELECT fixture.org('bi-a') AS org_a, fixture.org('bi-b') AS org_b \gset
SELECT membership_api.sync_members('[{"external_id": "m1", "email": "m1@bi-a.example", "profession": "pilot"}]',
                                   'delta', fixture.key('bi-a:org')) IS NOT NULL AS synced_a,
       membership_api.sync_members('[{"external_id": "m1", "email": "m1@bi-b.example", "profession": "pilot"}]',
                                   'delta', fixture.key('bi-b:org')) IS NOT NULL AS synced_b \gset
SELECT fixture.claims('member', 'bi-a', 'm1') AS member_a, fixture.claims('org_admin', 'bi-a') AS admin_a,
       fixture.claims('member', 'bi-b', 'm1') AS member_b, fixture.claims('org_admin', 'bi-b') AS admin_b \gset

-- Each organisation offers one benefit of its own bank; both members allow
-- tracking and personalisation, bookmark the category and used their benefit.
SELECT membership.set_benefit_category('bi_cat', 'Isolation') IS NULL AS category \gset
SELECT membership.create_benefit('bi-a-bank', 'bi_cat', 'For A') AS benefit_a,
       membership.create_benefit('bi-b-bank', 'bi_cat', 'For B') AS benefit_b \gset
SELECT membership.offer_benefit(:'org_a', :benefit_a) IS NULL AS offer_a,
       membership.offer_benefit(:'org_b', :benefit_b, 0.5) IS NULL AS offer_b \gset
SELECT set_config('request.jwt.claims', :'member_a', true) IS NOT NULL AS claims \gset
SELECT membership_api.set_consent('usage_tracking', true) IS NOT NULL AS c1,
       membership_api.set_consent('personalisation', true) IS NOT NULL AS c2 \gset
SELECT set_config('request.jwt.claims', :'member_b', true) IS NOT NULL AS claims \gset
SELECT membership_api.set_consent('usage_tracking', true) IS NOT NULL AS c1,
       membership_api.set_consent('personalisation', true) IS NOT NULL AS c2,
       membership_api.set_category_preference('bi_cat', 'bookmarked') IS NOT NULL AS p \gset
SELECT set_config('request.jwt.claims', '', true) IS NOT NULL AS cleared \gset
SELECT membership_api.record_benefit_usage(:benefit_a, 'm1@bi-a.example', api_key => fixture.key('bi-a:provider')) IS NOT NULL AS u1,
       membership_api.record_benefit_usage(:benefit_b, 'm1@bi-b.example', reference => 'b-ref',
                                           api_key => fixture.key('bi-b:provider')) IS NOT NULL AS u2 \gset
SELECT membership_api.save_article('A news', 'for A', api_key => fixture.key('bi-a:org')) AS article_a,
       membership_api.save_article('B news', 'for B', api_key => fixture.key('bi-b:org')) AS article_b,
       membership_api.save_article('B draft', 'draft of B', api_key => fixture.key('bi-b:org')) AS draft_b \gset
SELECT membership_api.set_article_status(:'article_a', 'published', fixture.key('bi-a:org')) IS NOT NULL AS p1,
       membership_api.set_article_status(:'article_b', 'published', fixture.key('bi-b:org')) IS NOT NULL AS p2 \gset
SELECT membership.score_feeds() IS NOT NULL AS scored \gset

-- A snapshot of B's data in the benefits tables, to compare with after A's
-- callers have acted.
CREATE FUNCTION pg_temp.b_now() RETURNS TABLE (t text, data jsonb) LANGUAGE sql AS $$
    SELECT 'benefit_offers', to_jsonb(o) FROM membership.benefit_offers o WHERE organisation_id = fixture.org('bi-b')
    UNION ALL
    SELECT 'benefit_usage', to_jsonb(u) FROM membership.benefit_usage u WHERE organisation_id = fixture.org('bi-b')
    UNION ALL
    SELECT 'category_preferences', to_jsonb(p) FROM membership.category_preferences p WHERE organisation_id = fixture.org('bi-b')
    UNION ALL
    SELECT 'feeds', to_jsonb(f) FROM membership.feeds f WHERE organisation_id = fixture.org('bi-b')
    UNION ALL
    SELECT 'articles', to_jsonb(a) FROM membership.articles a WHERE organisation_id = fixture.org('bi-b')
    UNION ALL
    SELECT 'organisations', to_jsonb(o) FROM membership.organisations o WHERE id = fixture.org('bi-b')
$$;
CREATE TEMPORARY TABLE b_before AS SELECT * FROM pg_temp.b_now();
CREATE FUNCTION pg_temp.b_changed() RETURNS SETOF text LANGUAGE sql AS $$
    SELECT 'changed: ' || t || ' ' || data::text FROM (SELECT * FROM b_before EXCEPT SELECT * FROM pg_temp.b_now()) x
    UNION ALL
    SELECT 'new: ' || t || ' ' || data::text FROM (SELECT * FROM pg_temp.b_now() EXCEPT SELECT * FROM b_before) y
$$;
SELECT isnt_empty('SELECT * FROM b_before WHERE t = ''feeds''', 'the fixture has a feed of B to protect');

-------------------------------------------------------------------------
-- A's member.
-------------------------------------------------------------------------
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'member_a', true);
SELECT set_eq('SELECT benefit_id FROM membership_api.feed()', ARRAY[:benefit_a],
    'feed() as A''s member holds A''s offers only');
SELECT set_eq('SELECT benefit_id FROM membership_api.benefits()', ARRAY[:benefit_a],
    'benefits() as A''s member lists A''s offers only');
SELECT results_eq($$SELECT benefits, preference FROM membership_api.benefit_categories() WHERE category = 'bi_cat'$$,
    $$VALUES (1::bigint, NULL::text)$$,
    'benefit_categories() as A''s member counts A''s offers and shows A''s member''s preference, not B''s');
SELECT is(membership_api.set_category_preference('bi_cat', 'hidden'), '{"bi_cat": "hidden"}'::jsonb,
    'set_category_preference() as A''s member sets that member''s preference');
SELECT is(membership_api.app_config() ->> 'organisation', 'bi-a', 'app_config() as A''s member is A''s');
SELECT set_eq('SELECT id FROM membership_api.articles()', ARRAY[:'article_a'::uuid],
    'articles() as A''s member lists A''s published articles only');
SELECT throws_ok(format('SELECT membership_api.set_benefit_promotion(%s, 1)', :benefit_a), '42501', NULL,
    'a member cannot promote benefits');
SELECT throws_ok('SELECT * FROM membership_api.org_articles()', '42501', NULL,
    'a member cannot read the editorial desk');
SELECT throws_ok('SELECT * FROM membership_api.benefit_usage_report()', '42501', NULL,
    'a member cannot read usage reports');
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT is_empty('SELECT pg_temp.b_changed()', '... and nothing of B changed');

-------------------------------------------------------------------------
-- A's administrator and A's keys.
-------------------------------------------------------------------------
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'admin_a', true);
SELECT throws_ok(format('SELECT membership_api.set_benefit_promotion(%s, 1)', :benefit_b), 'PT404', NULL,
    'set_benefit_promotion() as A''s administrator cannot reach B''s offer');
SELECT lives_ok(format('SELECT membership_api.set_benefit_promotion(%s, 0.25)', :benefit_a),
    '... but promotes A''s own');
SELECT set_eq('SELECT id FROM membership_api.org_articles()', ARRAY[:'article_a'::uuid],
    'org_articles() as A''s administrator lists A''s articles only');
SELECT throws_ok(format('SELECT membership_api.set_article_status(%L, %L)', :'draft_b', 'published'), 'PT404', NULL,
    'set_article_status() as A''s administrator cannot find B''s draft');
SELECT throws_ok(format('SELECT membership_api.save_article(%L, %L, article => %L)', 'taken', 'over', :'article_b'),
    'PT404', NULL, 'save_article() as A''s administrator cannot change B''s article');
SELECT isnt(membership_api.save_article('A again', 'new'), :'article_b'::uuid,
    'save_article() as A''s administrator writes an article of A');
SELECT set_eq('SELECT benefit_id FROM membership_api.benefit_usage_report()', ARRAY[:benefit_a],
    'benefit_usage_report() as A''s administrator counts A''s usage only');
SELECT is((SELECT sum(members) FROM membership_api.active_members_report()), 1::numeric,
    'active_members_report() as A''s administrator counts A''s members only');
SELECT is(membership_api.app_config() ->> 'organisation', 'bi-a', 'app_config() as A''s administrator is A''s');
SELECT set_eq('SELECT benefit_id FROM membership_api.benefits()', ARRAY[:benefit_a],
    'benefits() as A''s administrator lists A''s offers only');
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT is_empty('SELECT pg_temp.b_changed()', '... and nothing of B changed');

SELECT throws_ok(format('SELECT membership_api.set_article_status(%L, %L, %L)', :'article_b', 'archived',
                        fixture.key('bi-a:org')), 'PT404', NULL,
    'set_article_status() with A''s key cannot archive B''s article');
SELECT is((SELECT count(*) FROM membership_api.org_articles(api_key => fixture.key('bi-a:org'))
           WHERE id IN (:'article_b', :'draft_b')), 0::bigint,
    'org_articles() with A''s key shows none of B''s');
SELECT is((SELECT count(*) FROM membership_api.benefit_usage_report(api_key => fixture.key('bi-a:org'))
           WHERE benefit_id = :benefit_b), 0::bigint,
    'benefit_usage_report() with A''s key shows none of B''s usage');
SELECT is((SELECT sum(members) FROM membership_api.active_members_report(fixture.key('bi-a:org'))), 1::numeric,
    'active_members_report() with A''s key counts A''s members only');
SELECT throws_ok(format('SELECT membership_api.record_benefit_usage(%s, %L, api_key => %L)',
                        :benefit_b, 'm1@bi-b.example', fixture.key('bi-a:provider')), 'PT404', NULL,
    'record_benefit_usage() with A''s provider key cannot report a use of B''s benefit');
SELECT is(membership_api.record_benefit_usage(:benefit_a, 'm1@bi-b.example', reference => 'b-ref',
                                              api_key => fixture.key('bi-a:provider')) ->> 'duplicate', 'false',
    'record_benefit_usage() with A''s key and B''s reference and member email records a new use in A');
SELECT is((SELECT member_id FROM membership.benefit_usage WHERE organisation_id = :'org_a' AND reference = 'b-ref'),
    NULL, '... kept anonymously: B''s member is no member of A');
SELECT is_empty('SELECT pg_temp.b_changed()', '... and nothing of B changed');

-------------------------------------------------------------------------
-- A session that is not the gateway, forging B's claims or headers.
-------------------------------------------------------------------------
SET SESSION AUTHORIZATION mallory;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'member_b', true);
SELECT throws_ok('SELECT * FROM membership_api.feed()', 'PT401', 'JWT claims are not trusted in this session',
    'forged member claims: feed() refused');
SELECT throws_ok('SELECT * FROM membership_api.benefits()', 'PT401', NULL, 'forged member claims: benefits() refused');
SELECT throws_ok('SELECT * FROM membership_api.benefit_categories()', 'PT401', NULL,
    'forged member claims: benefit_categories() refused');
SELECT throws_ok($$SELECT membership_api.set_category_preference('bi_cat', 'hidden')$$, 'PT401', NULL,
    'forged member claims: set_category_preference() refused');
SELECT throws_ok('SELECT membership_api.app_config()', 'PT401', NULL, 'forged member claims: app_config() refused');
SELECT throws_ok('SELECT * FROM membership_api.articles()', 'PT401', NULL, 'forged member claims: articles() refused');
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'admin_b', true);
SELECT throws_ok(format('SELECT membership_api.set_benefit_promotion(%s, 0)', :benefit_b), 'PT401', NULL,
    'forged administrator claims: set_benefit_promotion() refused');
SELECT throws_ok(format('SELECT membership_api.set_article_status(%L, %L)', :'article_b', 'archived'), 'PT401', NULL,
    'forged administrator claims: set_article_status() refused');
SELECT set_config('request.jwt.claims', '', true);
SET ROLE membership_provider;
SELECT set_config('request.headers', format('{"x-api-key": "%s"}', 'mk_aaaaaaaa_' || repeat('a', 52)), true);
SELECT throws_ok(format('SELECT membership_api.record_benefit_usage(%s)', :benefit_b), 'PT401', 'invalid API key',
    'forged headers without a real key: record_benefit_usage() refused');
SELECT set_config('request.headers', '', true);
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT is_empty('SELECT pg_temp.b_changed()', 'after all of that, nothing of B changed');

SELECT * FROM finish();
ROLLBACK;
