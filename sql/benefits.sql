-- The benefit catalogue, offers and promotion, the relevance matrix,
-- usage reported by providers (kept per member only with consent), and
-- what members see and choose: categories, benefits, preferences, and
-- their organisation's app settings.
SELECT fixture.new_org('ben-a') IS NOT NULL, fixture.new_org('ben-b') IS NOT NULL;
SELECT membership.set_app_config(fixture.org('ben-a'),
    '{"app_name": "Ben A", "theme": {"primary": "#112233"}, "support_email": "help@ben-a.example"}');
SELECT membership_api.sync_members($$[
    {"external_id": "m1", "email": "m1@ben-a.example", "profession": "Surgeon"},
    {"external_id": "m2", "email": "m2@ben-a.example", "profession": "dentist"},
    {"external_id": "m3", "email": "m3@ben-a.example", "status": "lapsed"}]$$, 'delta', fixture.key('ben-a:org'));
SELECT membership_api.sync_members('[{"external_id": "m1", "email": "m1@ben-b.example"}]', 'delta',
                                   fixture.key('ben-b:org'));
SELECT fixture.claims('member', 'ben-a', 'm1') AS m1, fixture.claims('member', 'ben-a', 'm2') AS m2,
       fixture.claims('member', 'ben-a', 'm3') AS m3, fixture.claims('org_admin', 'ben-a') AS admin_a,
       fixture.claims('member', 'ben-b', 'm1') AS b1 \gset

-------------------------------------------------------------------------
-- The catalogue (platform administrators).
-------------------------------------------------------------------------
SELECT membership.set_benefit_category('travel', 'Travel'), membership.set_benefit_category('health', 'Health'),
       membership.set_benefit_category('banking', 'Banks');
SELECT membership.set_benefit_category('banking', ' Banking ');
SELECT category, name FROM membership.benefit_categories WHERE category IN ('travel', 'health', 'banking') ORDER BY 1;
SELECT fixture.try($$SELECT membership.set_benefit_category('Travel Deals', 'x')$$);
SELECT fixture.try($$SELECT membership.set_benefit_category('x', '')$$);
SELECT fixture.try($$SELECT membership.set_benefit_category(NULL, 'x')$$);

SELECT membership.create_benefit('ben-a-bank', 'travel', 'Airport lounge', 0.5,
                                 'Free lounge access.', 'https://ben-a-bank.example/lounge') AS lounge,
       membership.create_benefit('ben-a-bank', 'health', ' Gym discount ', 0.3) AS gym,
       membership.create_benefit('ben-a-bank', 'banking', 'Low-rate loan', 0.2, added_on => current_date - 30) AS loan,
       membership.create_benefit('ben-b-bank', 'travel', 'Ferry tickets', 0.4) AS ferry \gset
SELECT id = :lounge AS lounge, title, category, base_score, url, added_on = current_date AS added_today, active
FROM membership.benefits WHERE id IN (:lounge, :gym, :loan, :ferry) ORDER BY id;
SELECT fixture.try($$SELECT membership.create_benefit('no-such-bank', 'travel', 'x')$$);
SELECT fixture.try($$SELECT membership.create_benefit('ben-a-bank', 'space', 'x')$$);
SELECT fixture.try($$SELECT membership.create_benefit('ben-a-bank', 'travel', 'x', 1.5)$$);
SELECT fixture.try($$SELECT membership.create_benefit('ben-a-bank', 'travel', 'x', -0.1)$$);
SELECT fixture.try($$SELECT membership.create_benefit('ben-a-bank', 'travel', 'x', 'NaN')$$);
SELECT fixture.try($$SELECT membership.create_benefit('ben-a-bank', 'travel', 'x', NULL)$$);
SELECT fixture.try($$SELECT membership.create_benefit('ben-a-bank', 'travel', '  ')$$);
SELECT fixture.try($$SELECT membership.create_benefit('ben-a-bank', 'travel', 'x', url => 'http://insecure.example')$$);
SELECT fixture.try($$SELECT membership.create_benefit('ben-a-bank', 'travel', 'x', description => repeat('d', 2001))$$);
SELECT fixture.try($$SELECT membership.create_benefit('ben-a-bank', 'travel', 'x', added_on => 'infinity')$$);
SELECT fixture.try($$SELECT membership.create_benefit('ben-a-bank', NULL, 'x')$$);

SELECT membership.update_benefit(:gym, base_score => 0.35, description => 'All gyms in town.');
SELECT title, base_score, description, active FROM membership.benefits WHERE id = :gym;
SELECT fixture.try($$SELECT membership.update_benefit(999999, active => false)$$);
SELECT fixture.try(format('SELECT membership.update_benefit(%s, base_score => 2)', :gym));
SELECT fixture.try(format('SELECT membership.update_benefit(%s, category => %L)', :gym, 'space'));
SELECT fixture.try($$SELECT membership.update_benefit(NULL)$$);

-- Relevance of categories to professions: professions are kept in lower case.
SELECT membership.set_category_relevance(' Surgeon ', 'health', 0.9),
       membership.set_category_relevance('dentist', 'health', 0.6),
       membership.set_category_relevance('dentist', 'banking', 0.2);
SELECT membership.set_category_relevance('dentist', 'banking', NULL);
SELECT profession, category, relevance FROM membership.category_relevance
WHERE profession IN ('surgeon', 'dentist') AND category IN ('travel', 'health', 'banking') ORDER BY 1, 2;
SELECT fixture.try($$SELECT membership.set_category_relevance('surgeon', 'health', 1.01)$$);
SELECT fixture.try($$SELECT membership.set_category_relevance('', 'health', 0.5)$$);
SELECT fixture.try($$SELECT membership.set_category_relevance('surgeon', 'space', 0.5)$$);
SELECT fixture.try($$SELECT membership.set_category_relevance(NULL, 'health', 0.5)$$);

-- Offers: an organisation offers benefits, each with a promotion weight.
SELECT membership.offer_benefit(fixture.org('ben-a'), :lounge), membership.offer_benefit(fixture.org('ben-a'), :gym, 0.5),
       membership.offer_benefit(fixture.org('ben-a'), :loan), membership.offer_benefit(fixture.org('ben-b'), :ferry),
       membership.offer_benefit(fixture.org('ben-b'), :lounge, 1);
SELECT membership.offer_benefit(fixture.org('ben-a'), :loan, 0.25);
SELECT o.slug, b.title, x.promotion_weight
FROM membership.benefit_offers x JOIN membership.organisations o ON o.id = x.organisation_id
JOIN membership.benefits b ON b.id = x.benefit_id
WHERE o.slug IN ('ben-a', 'ben-b') ORDER BY 1, 2;
SELECT fixture.try(format('SELECT membership.offer_benefit(%L, 999999)', fixture.org('ben-a')));
SELECT fixture.try(format('SELECT membership.offer_benefit(%L, %s, 1.5)', fixture.org('ben-a'), :gym));
SELECT fixture.try(format('SELECT membership.offer_benefit(%L, %s)', '00000000-0000-0000-0000-000000000000', :gym));
SELECT fixture.try(format('SELECT membership.offer_benefit(NULL, %s)', :gym));
SELECT membership.withdraw_benefit(fixture.org('ben-b'), :lounge) AS withdrawn,
       membership.withdraw_benefit(fixture.org('ben-b'), :lounge) AS again;

-- Benefit ids in messages depend on what earlier suites created.
CREATE FUNCTION pg_temp.try(stmt text) RETURNS text LANGUAGE sql AS $$
    SELECT regexp_replace(fixture.try(stmt), 'benefit \d+', 'benefit <id>')
$$;
GRANT EXECUTE ON FUNCTION pg_temp.try(text) TO PUBLIC;

-- An organisation administrator promotes what the organisation offers.
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'admin_a', false) IS NOT NULL;
SELECT membership_api.set_benefit_promotion(:lounge, 0.8);
SELECT pg_temp.try(format('SELECT membership_api.set_benefit_promotion(%s, 0.8)', :ferry));
SELECT fixture.try(format('SELECT membership_api.set_benefit_promotion(%s, 1.2)', :lounge));
SELECT fixture.try(format('SELECT membership_api.set_benefit_promotion(%s, NULL)', :lounge));
SELECT fixture.try('SELECT membership_api.set_benefit_promotion(NULL, 0.5)');
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT promotion_weight FROM membership.benefit_offers WHERE organisation_id = fixture.org('ben-a') AND benefit_id = :lounge;

-------------------------------------------------------------------------
-- Usage reported by providers.
-------------------------------------------------------------------------
-- m1 allows usage tracking, m2 does not.
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'m1', false) IS NOT NULL;
SELECT membership_api.set_consent('usage_tracking', true) ->> 'usage_tracking' AS m1_tracking;
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL;

SELECT membership_api.record_benefit_usage(:lounge, 'M1@Ben-A.example', api_key => fixture.key('ben-a:provider'));
SELECT membership_api.record_benefit_usage(:gym, user_id => 'm1', used_at => now() - interval '3 days',
                                           reference => 'tx-1', api_key => fixture.key('ben-a:provider'));
SELECT membership_api.record_benefit_usage(:gym, 'm2@ben-a.example', api_key => fixture.key('ben-a:provider'));
SELECT membership_api.record_benefit_usage(:gym, 'nobody@ben-a.example', api_key => fixture.key('ben-a:provider'));
SELECT membership_api.record_benefit_usage(:loan, api_key => fixture.key('ben-a:provider'));
-- the same reference again is a duplicate, not a second use
SELECT membership_api.record_benefit_usage(:gym, user_id => 'm1', reference => 'tx-1',
                                           api_key => fixture.key('ben-a:provider'));
-- who used what: only m1's uses name a member
SELECT b.title, m.external_id AS member, u.reference
FROM membership.benefit_usage u JOIN membership.benefits b ON b.id = u.benefit_id
LEFT JOIN membership.members m ON m.id = u.member_id
WHERE u.organisation_id = fixture.org('ben-a') ORDER BY u.id;

-- Bad reports change nothing.
SELECT fixture.try(format('SELECT membership_api.record_benefit_usage(%s, %L, api_key => %L)',
                          :gym, 'm1@ben-a.example', fixture.key('ben-a:org')));
SELECT fixture.try(format('SELECT membership_api.record_benefit_usage(%s, %L)', :gym, 'm1@ben-a.example'));
SELECT pg_temp.try(format('SELECT membership_api.record_benefit_usage(%s, api_key => %L)', :ferry, fixture.key('ben-a:provider')));
SELECT pg_temp.try(format('SELECT membership_api.record_benefit_usage(%s, api_key => %L)', :lounge, fixture.key('ben-b:provider')));
SELECT fixture.try(format('SELECT membership_api.record_benefit_usage(NULL, api_key => %L)', fixture.key('ben-a:provider')));
SELECT fixture.try(format('SELECT membership_api.record_benefit_usage(%s, %L, %L, api_key => %L)',
                          :gym, 'm1@ben-a.example', 'm1', fixture.key('ben-a:provider')));
SELECT fixture.try(format('SELECT membership_api.record_benefit_usage(%s, %L, api_key => %L)',
                          :gym, 'not an address', fixture.key('ben-a:provider')));
SELECT fixture.try(format('SELECT membership_api.record_benefit_usage(%s, user_id => %L, api_key => %L)',
                          :gym, ' ', fixture.key('ben-a:provider')));
SELECT fixture.try(format('SELECT membership_api.record_benefit_usage(%s, used_at => now() + interval %L, api_key => %L)',
                          :gym, '1 hour', fixture.key('ben-a:provider')));
SELECT fixture.try(format('SELECT membership_api.record_benefit_usage(%s, used_at => now() - interval %L, api_key => %L)',
                          :gym, '400 days', fixture.key('ben-a:provider')));
SELECT fixture.try(format('SELECT membership_api.record_benefit_usage(%s, used_at => %L, api_key => %L)',
                          :gym, 'infinity', fixture.key('ben-a:provider')));
SELECT fixture.try(format('SELECT membership_api.record_benefit_usage(%s, reference => %L, api_key => %L)',
                          :gym, repeat('r', 201), fixture.key('ben-a:provider')));
SELECT fixture.try(format('SELECT membership_api.record_benefit_usage(%s, reference => %L, api_key => %L)',
                          :lounge, 'tx-1', fixture.key('ben-a:provider')));
SELECT membership.update_benefit(:loan, active => false);
SELECT pg_temp.try(format('SELECT membership_api.record_benefit_usage(%s, api_key => %L)', :loan, fixture.key('ben-a:provider')));
SELECT membership.update_benefit(:loan, active => true);
SELECT count(*) AS uses FROM membership.benefit_usage WHERE organisation_id = fixture.org('ben-a');

-- Revoking usage tracking makes the member's past uses anonymous at once.
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'m1', false) IS NOT NULL;
SELECT membership_api.set_consent('usage_tracking', false) ->> 'usage_tracking' AS m1_tracking;
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT count(*) AS uses, count(member_id) AS with_member
FROM membership.benefit_usage WHERE organisation_id = fixture.org('ben-a');

-- The nightly job makes per-member usage older than a year anonymous.
SELECT set_config('request.jwt.claims', :'m1', false) IS NOT NULL;
SELECT membership_api.set_consent('usage_tracking', true) ->> 'usage_tracking' AS m1_tracking;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL;
SELECT membership_api.record_benefit_usage(:gym, 'm1@ben-a.example', used_at => now() - interval '200 days',
                                           api_key => fixture.key('ben-a:provider'));
SELECT membership.anonymise_benefit_usage(now() + interval '200 days') AS anonymised;
SELECT count(member_id) AS with_member FROM membership.benefit_usage WHERE organisation_id = fixture.org('ben-a');
SELECT fixture.try($$SELECT membership.anonymise_benefit_usage('infinity')$$);

-------------------------------------------------------------------------
-- What members see and choose.
-------------------------------------------------------------------------
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'m2', false) IS NOT NULL;
SELECT category, name, benefits, preference FROM membership_api.benefit_categories()
WHERE category IN ('travel', 'health', 'banking');
SELECT title, category, provider, url, promotion_weight, preference FROM membership_api.benefits();
SELECT title FROM membership_api.benefits('health');
SELECT fixture.try($$SELECT * FROM membership_api.benefits('space')$$);

-- Bookmarking and hiding; NULL clears; the answer is every preference.
SELECT membership_api.set_category_preference('travel', 'hidden');
SELECT membership_api.set_category_preference('health', 'bookmarked');
SELECT membership_api.set_category_preference('health', 'bookmarked');
SELECT membership_api.set_category_preference('travel', NULL);
SELECT membership_api.set_category_preference('banking', 'hidden');
SELECT category, preference FROM membership_api.benefit_categories()
WHERE preference IS NOT NULL ORDER BY category;
SELECT title, preference FROM membership_api.benefits() WHERE preference IS NOT NULL;
SELECT fixture.try($$SELECT membership_api.set_category_preference('travel', 'loved')$$);
SELECT fixture.try($$SELECT membership_api.set_category_preference('space', 'hidden')$$);
SELECT fixture.try($$SELECT membership_api.set_category_preference(NULL, 'hidden')$$);

-- White label: the member's organisation's app settings.
SELECT membership_api.app_config();

-- A member who is not active cannot steer a feed.
SELECT set_config('request.jwt.claims', :'m3', false) IS NOT NULL;
SELECT fixture.try($$SELECT membership_api.set_category_preference('travel', 'hidden')$$);

-- Another organisation's member sees that organisation's offers and app.
SELECT set_config('request.jwt.claims', :'b1', false) IS NOT NULL;
SELECT title, promotion_weight FROM membership_api.benefits();
SELECT membership_api.app_config() ->> 'organisation' AS organisation;
RESET ROLE;

-- Organisation administrators see the catalogue and the app too, without
-- preferences; providers see none of this.
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'admin_a', false) IS NOT NULL;
SELECT count(*) AS offered, count(preference) AS preferences FROM membership_api.benefits();
SELECT membership_api.app_config() ->> 'app_name' AS app_name;
SELECT fixture.try($$SELECT membership_api.set_category_preference('travel', 'hidden')$$);
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL;
SELECT set_config('request.headers', json_build_object('x-api-key', fixture.key('ben-a:provider'))::text, false) IS NOT NULL;
SELECT fixture.try('SELECT membership_api.app_config()');
SELECT fixture.try('SELECT * FROM membership_api.benefit_categories()');
SELECT set_config('request.headers', '', false) IS NOT NULL;
