-- Personalised feeds: each term of the score on small cases computed by
-- hand (DESIGN.md 4.5), consent, hidden categories, ties, the top 20, the
-- nightly pass and the one-member refresh, and membership_api.feed().
--
--   score = base + 0.4 category_match + 0.3 usage_history + 0.2 org_weight + 0.1 recency
SELECT fixture.new_org('sc-a') IS NOT NULL, fixture.new_org('sc-b') IS NOT NULL;
SELECT membership.set_benefit_category('sc_travel', 'Travel'), membership.set_benefit_category('sc_health', 'Health'),
       membership.set_benefit_category('sc_bank', 'Banking'), membership.set_benefit_category('sc_food', 'Food');

-- The catalogue, in id order: T1 and T2 tie on everything; B1, B2 and B3
-- were added 3, 7 and 6 days ago (the last 7 days are today and the 6
-- before); X1 is inactive.
SELECT membership.create_benefit('sc-a-bank', 'sc_travel', 'T1', 0.5, added_on => current_date - 100) AS t1,
       membership.create_benefit('sc-a-bank', 'sc_travel', 'T2', 0.5, added_on => current_date - 100) AS t2,
       membership.create_benefit('sc-a-bank', 'sc_health', 'H1', 0.3, added_on => current_date - 100) AS h1,
       membership.create_benefit('sc-a-bank', 'sc_bank', 'B1', 0.2, added_on => current_date - 3) AS b1,
       membership.create_benefit('sc-a-bank', 'sc_bank', 'B2', 0.2, added_on => current_date - 7) AS b2,
       membership.create_benefit('sc-a-bank', 'sc_bank', 'B3', 0.2, added_on => current_date - 6) AS b3,
       membership.create_benefit('sc-a-bank', 'sc_food', 'F1', 0.1, added_on => current_date - 100) AS f1,
       membership.create_benefit('sc-a-bank', 'sc_food', 'X1', 0.9, added_on => current_date - 100) AS x1 \gset
SELECT membership.update_benefit(:x1, active => false);
-- Organisation A offers them all and promotes H1 (0.5) and F1 (0.75).
SELECT count(membership.offer_benefit(fixture.org('sc-a'), id,
                                      CASE title WHEN 'H1' THEN 0.5 WHEN 'F1' THEN 0.75 ELSE 0 END)) AS offered
FROM membership.benefits WHERE id BETWEEN :t1 AND :x1;
-- Surgeons find health very relevant (0.9) and food a little (0.25).
SELECT membership.set_category_relevance('surgeon', 'sc_health', 0.9),
       membership.set_category_relevance('surgeon', 'sc_food', 0.25);

SELECT membership_api.sync_members($$[
    {"external_id": "plain", "profession": "Surgeon"},
    {"external_id": "personal", "profession": "Surgeon"},
    {"external_id": "bookmarker", "profession": "surgeon"},
    {"external_id": "no-consent", "profession": "Surgeon"},
    {"external_id": "user", "email": "user@sc-a.example"},
    {"external_id": "tracked-only", "email": "tracked@sc-a.example"},
    {"external_id": "untracked", "email": "untracked@sc-a.example"},
    {"external_id": "inactive", "status": "inactive"}]$$, 'delta', fixture.key('sc-a:org')) ->> 'inserted' AS members;

-- A member's stored feed as "title score, ...", best first.
CREATE FUNCTION pg_temp.feed(org text, external_id text) RETURNS text
    LANGUAGE sql AS $$
    SELECT string_agg(b.title || ' ' || round(e.score::numeric, 4), ', ' ORDER BY e.ord)
    FROM membership.members m
    JOIN membership.feeds f ON f.organisation_id = m.organisation_id AND f.member_id = m.id
    CROSS JOIN LATERAL unnest(f.benefit_ids, f.scores) WITH ORDINALITY AS e(benefit_id, score, ord)
    JOIN membership.benefits b ON b.id = e.benefit_id
    WHERE m.organisation_id = fixture.org(org) AND m.external_id = feed.external_id
$$;
-- Act as a member of organisation A through the gateway.
CREATE TABLE pg_temp.member_claims (external_id text PRIMARY KEY, claims text NOT NULL);
GRANT SELECT ON pg_temp.member_claims TO PUBLIC;
INSERT INTO pg_temp.member_claims
SELECT external_id, fixture.claims('member', 'sc-a', external_id)
FROM membership.members WHERE organisation_id = fixture.org('sc-a');
CREATE FUNCTION pg_temp.as_member(external_id text) RETURNS void
    LANGUAGE sql AS $$
    SELECT set_config('request.jwt.claims',
                      (SELECT c.claims FROM pg_temp.member_claims c WHERE c.external_id = as_member.external_id), false);
    SELECT set_config('role', 'membership_member', false);
$$;

-- Consents and preferences, as the members give them.
SET SESSION AUTHORIZATION authenticator;
SELECT pg_temp.as_member('personal');
SELECT membership_api.set_consent('personalisation', true) IS NOT NULL AS ok;
SELECT pg_temp.as_member('bookmarker');
SELECT membership_api.set_consent('personalisation', true) IS NOT NULL AS ok;
SELECT membership_api.set_category_preference('sc_bank', 'bookmarked');
SELECT pg_temp.as_member('no-consent');
SELECT membership_api.set_category_preference('sc_bank', 'bookmarked');
SELECT membership_api.set_category_preference('sc_travel', 'hidden');
SELECT pg_temp.as_member('user');
SELECT membership_api.set_consent('personalisation', true) IS NOT NULL AS ok;
SELECT membership_api.set_consent('usage_tracking', true) IS NOT NULL AS ok;
SELECT pg_temp.as_member('tracked-only');
SELECT membership_api.set_consent('usage_tracking', true) IS NOT NULL AS ok;
SELECT pg_temp.as_member('untracked');
SELECT membership_api.set_consent('personalisation', true) IS NOT NULL AS ok;
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL;

-- Usage: three uses of T1 and one of B2 by "user", "tracked-only" and
-- "untracked" alike; the last allows no tracking, so theirs are anonymous.
-- One use by "user" 400 days ago falls outside the 365-day window.
SELECT count(membership_api.record_benefit_usage(b.id, m.email, used_at => now() - make_interval(days => k),
                                                 api_key => fixture.key('sc-a:provider'))) AS uses
FROM (VALUES ('user@sc-a.example'), ('tracked@sc-a.example'), ('untracked@sc-a.example')) AS m(email),
     (VALUES (:t1, 1), (:t1, 2), (:t1, 3), (:b2, 4)) AS b(id, k);
INSERT INTO membership.benefit_usage (organisation_id, benefit_id, member_id, provider_id, used_at)
SELECT fixture.org('sc-a'), :h1, m.id, (SELECT id FROM membership.providers WHERE slug = 'sc-a-bank'), now() - interval '400 days'
FROM membership.members m WHERE m.organisation_id = fixture.org('sc-a') AND m.external_id = 'user';
SELECT m.external_id, count(u.*) AS tracked_uses FROM membership.members m
LEFT JOIN membership.benefit_usage u ON u.member_id = m.id
WHERE m.organisation_id = fixture.org('sc-a') AND m.external_id IN ('user', 'tracked-only', 'untracked')
GROUP BY 1 ORDER BY 1;

-- The nightly pass: every active member of every organisation with a
-- benefit on offer gets a feed.
DELETE FROM membership.feeds WHERE organisation_id = fixture.org('sc-a');
SELECT membership.score_feeds() >= 7 AS scored;
SELECT m.external_id, f.member_id IS NOT NULL AS has_feed
FROM membership.members m LEFT JOIN membership.feeds f ON f.member_id = m.id
WHERE m.organisation_id = fixture.org('sc-a') ORDER BY 1;

-- base, org_weight and recency only (no consent): H1 0.3 + 0.2*0.5,
-- B1 and B3 0.2 + 0.1 (recent), F1 0.1 + 0.2*0.75, B2 0.2 (7 days old is
-- not recent); T1 and T2 tie at 0.5 and go by id; X1 is inactive.
SELECT pg_temp.feed('sc-a', 'plain') AS plain,
       pg_temp.feed('sc-a', 'plain') = 'T1 0.5000, T2 0.5000, H1 0.4000, B1 0.3000, B3 0.3000, F1 0.2500, B2 0.2000' AS as_computed;

-- category_match from the profession, with personalisation: H1 gains
-- 0.4*0.9 = 0.36 (0.76), F1 0.4*0.25 = 0.1 (0.35).
SELECT pg_temp.feed('sc-a', 'personal') AS personal,
       pg_temp.feed('sc-a', 'personal') = 'H1 0.7600, T1 0.5000, T2 0.5000, F1 0.3500, B1 0.3000, B3 0.3000, B2 0.2000' AS as_computed;

-- A bookmarked category matches fully: the B's gain 0.4.
SELECT pg_temp.feed('sc-a', 'bookmarker') AS bookmarker,
       pg_temp.feed('sc-a', 'bookmarker') = 'H1 0.7600, B1 0.7000, B3 0.7000, B2 0.6000, T1 0.5000, T2 0.5000, F1 0.3500' AS as_computed;

-- Without consent a bookmark does not count, but a hidden category is
-- always left out (the travel benefits).
SELECT pg_temp.feed('sc-a', 'no-consent') AS no_consent,
       pg_temp.feed('sc-a', 'no-consent') = 'H1 0.4000, B1 0.3000, B3 0.3000, F1 0.2500, B2 0.2000' AS as_computed;

-- usage_history with both consents: of 4 uses in the window, 3 travel
-- (share 0.75: T's gain 0.225) and 1 banking (0.25: B's gain 0.075); the
-- use 400 days ago does not count.
SELECT pg_temp.feed('sc-a', 'user') AS "user",
       pg_temp.feed('sc-a', 'user') = 'T1 0.7250, T2 0.7250, H1 0.4000, B1 0.3750, B3 0.3750, B2 0.2750, F1 0.2500' AS as_computed;

-- The same uses count for nothing without personalisation, and are not
-- even kept without usage tracking.
SELECT pg_temp.feed('sc-a', 'tracked-only') = pg_temp.feed('sc-a', 'plain') AS tracked_only_is_plain,
       pg_temp.feed('sc-a', 'untracked') = pg_temp.feed('sc-a', 'plain') AS untracked_is_plain;

-- The top 20: organisation B offers 25 benefits scored 0.01 to 0.25.
SELECT count(membership.offer_benefit(fixture.org('sc-b'),
                                      membership.create_benefit('sc-b-bank', 'sc_food', 'N' || lpad(i::text, 2, '0'),
                                                                i / 100.0, added_on => current_date - 30)))
FROM generate_series(1, 25) AS i;
SELECT membership_api.sync_members('[{"external_id": "many"}]', 'delta', fixture.key('sc-b:org')) ->> 'inserted' AS members;
SELECT membership.score_feeds() >= 8 AS scored;
SELECT pg_temp.feed('sc-b', 'many') AS top_20;

-- Scoring again changes nothing that did not change.
SELECT scored_at AS before FROM membership.feeds f JOIN membership.members m ON m.id = f.member_id
WHERE m.external_id = 'user' AND m.organisation_id = fixture.org('sc-a') \gset
SELECT membership.score_feeds() >= 8 AS scored;
SELECT scored_at = :'before' AS untouched FROM membership.feeds f JOIN membership.members m ON m.id = f.member_id
WHERE m.external_id = 'user' AND m.organisation_id = fixture.org('sc-a');

-- A member who changes a preference or a consent is scored again at once.
SET SESSION AUTHORIZATION authenticator;
SELECT pg_temp.as_member('personal');
SELECT membership_api.set_category_preference('sc_health', 'hidden');
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT pg_temp.feed('sc-a', 'personal') AS hid_health;
SET SESSION AUTHORIZATION authenticator;
SELECT pg_temp.as_member('personal');
SELECT membership_api.set_consent('personalisation', false) ->> 'personalisation' AS personalisation;
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT pg_temp.feed('sc-a', 'personal') AS revoked_personalisation;
SET SESSION AUTHORIZATION authenticator;
SELECT pg_temp.as_member('user');
SELECT membership_api.set_consent('usage_tracking', false) ->> 'usage_tracking' AS usage_tracking;
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT pg_temp.feed('sc-a', 'user') AS revoked_tracking;
SELECT count(*) AS uses_kept_with_member FROM membership.benefit_usage u JOIN membership.members m ON m.id = u.member_id
WHERE m.external_id = 'user' AND m.organisation_id = fixture.org('sc-a');

-- The next night drops the feeds of members who are no longer active.
SELECT membership_api.sync_members('[{"external_id": "plain", "status": "lapsed"}]', 'delta',
                                   fixture.key('sc-a:org')) ->> 'updated' AS lapsed;
SELECT pg_temp.feed('sc-a', 'plain') IS NOT NULL AS has_feed_until_tonight;
SELECT membership.score_feeds() >= 7 AS scored;
SELECT pg_temp.feed('sc-a', 'plain') IS NOT NULL AS has_feed;

-- Deleted members lose their feed at once.
DELETE FROM membership.members WHERE organisation_id = fixture.org('sc-a') AND external_id = 'tracked-only';
SELECT count(*) AS orphan_feeds FROM membership.feeds f
WHERE NOT EXISTS (SELECT FROM membership.members m WHERE m.id = f.member_id);

-------------------------------------------------------------------------
-- membership_api.feed(): the member's feed with the benefits' details.
-------------------------------------------------------------------------
SET SESSION AUTHORIZATION authenticator;
SELECT pg_temp.as_member('bookmarker');
SELECT rank, title, category, provider, round(score::numeric, 4) AS score, is_new, scored_at IS NOT NULL AS scored
FROM membership_api.feed();
SELECT rank, title FROM membership_api.feed(3);
SELECT fixture.try('SELECT * FROM membership_api.feed(0)');
SELECT fixture.try('SELECT * FROM membership_api.feed(21)');
SELECT fixture.try('SELECT * FROM membership_api.feed(NULL)');
RESET ROLE;
RESET SESSION AUTHORIZATION;

-- A benefit deactivated or withdrawn during the day leaves every feed at once.
SELECT membership.update_benefit(:b1, active => false), membership.withdraw_benefit(fixture.org('sc-a'), :h1);
SET SESSION AUTHORIZATION authenticator;
SELECT pg_temp.as_member('bookmarker');
SELECT string_agg(rank || ' ' || title, ', ' ORDER BY rank) AS feed FROM membership_api.feed();

-- A member who joined since the last night gets a feed computed now.
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT membership_api.sync_members('[{"external_id": "newcomer", "profession": "surgeon"}]', 'delta',
                                   fixture.key('sc-a:org')) ->> 'inserted' AS joined;
INSERT INTO pg_temp.member_claims VALUES ('newcomer', fixture.claims('member', 'sc-a', 'newcomer'));
SET SESSION AUTHORIZATION authenticator;
SELECT pg_temp.as_member('newcomer');
SELECT string_agg(title || ' ' || round(score::numeric, 4), ', ' ORDER BY rank) AS feed FROM membership_api.feed();
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT pg_temp.feed('sc-a', 'newcomer') IS NULL AS not_stored_yet;

-- Members who are not active have no feed; others may not ask.
SELECT fixture.claims('org_admin', 'sc-a') AS admin_a \gset
SET SESSION AUTHORIZATION authenticator;
SELECT pg_temp.as_member('inactive');
SELECT fixture.try('SELECT * FROM membership_api.feed()');
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'admin_a', false) IS NOT NULL;
SELECT fixture.try('SELECT * FROM membership_api.feed()');
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL;

-- The pass's inputs are checked; its internals are not callable.
SELECT fixture.try('SELECT membership.score_feeds(NULL)');
SELECT fixture.try($$SELECT membership.score_feeds('infinity')$$);
SELECT fixture.try('SELECT * FROM membership.scored_feeds()');
SELECT fixture.try('SELECT * FROM membership.score_member(NULL)');
SELECT has_function_privilege('membership_worker', 'membership.score_feeds(date)', 'EXECUTE') AS worker_scores,
       has_function_privilege('membership_worker', 'membership.scored_feeds()', 'EXECUTE') AS worker_reads_internals,
       has_function_privilege('membership_member', 'membership.refresh_feed(uuid)', 'EXECUTE') AS member_refreshes;
