-- Benefits: a catalogue of 150 benefits, the nightly feed pass, members'
-- feeds and choices, usage from providers, articles, reports, jobs.
\echo
\echo '== Benefits and personalised feeds =='
\ir ../../bench/benefits_catalogue.sql
SELECT benefits_dataset.create_catalogue() \g /dev/null
SELECT benefits_dataset.create_history() \g /dev/null
ANALYZE;

\echo 'The catalogue: benefits per category, and how many the Association of Physicians offers:'
SELECT c.name AS category, count(b.*) AS benefits,
       count(o.*) AS offered_to_physicians, round(avg(b.base_score)::numeric, 2) AS mean_base_score
FROM membership.benefit_categories c
JOIN membership.benefits b ON b.category = c.category
LEFT JOIN membership.benefit_offers o ON o.benefit_id = b.id
     AND o.organisation_id = (SELECT id FROM membership.organisations WHERE slug = 'physicians')
GROUP BY c.name ORDER BY benefits DESC, c.name LIMIT 8;

\echo 'The nightly job, run the way pg_cron runs it, and recorded:'
CALL membership.run_job('score_feeds');
SELECT job, status, rows AS members_with_a_feed, round(extract(epoch FROM finished_at - started_at)::numeric, 2) AS seconds
FROM membership.job_runs WHERE job = 'score_feeds' ORDER BY id DESC LIMIT 1;

-- A personalised surgeon with usage history, and a member without consent.
SELECT m.id AS surgeon, o.id AS physicians,
       json_build_object('role', 'membership_member', 'org_id', o.id, 'member_id', m.id)::text AS claims
FROM membership.members m JOIN membership.organisations o ON o.id = m.organisation_id
WHERE o.slug = 'physicians' AND m.profession = 'surgeon' AND m.status = 'active'
  AND membership.has_consent(m.id, 'personalisation') AND membership.has_consent(m.id, 'usage_tracking')
  AND EXISTS (SELECT FROM membership.benefit_usage u WHERE u.member_id = m.id)
  AND NOT EXISTS (SELECT FROM membership.category_preferences p WHERE p.member_id = m.id)
ORDER BY m.external_id LIMIT 1 \gset
\echo 'A surgeon who allows personalisation: the top of their feed, through the API (as PostgREST calls it):'
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'claims', false) \g /dev/null
SELECT rank, title, category, round(score::numeric, 3) AS score, is_new FROM membership_api.feed(5);
\echo 'They hide the category of their best benefit; their feed follows at once:'
SELECT membership_api.set_category_preference((SELECT category FROM membership_api.feed(1)), 'hidden') AS preferences;
SELECT rank, title, category, round(score::numeric, 3) AS score FROM membership_api.feed(5);
\echo 'Their organisation''s app settings (white label) and latest articles:'
SELECT membership_api.app_config() ->> 'app_name' AS app, membership_api.app_config() -> 'theme' AS theme;
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT membership_api.save_article('New benefits this autumn', 'Five new travel and insurance offers for members.',
                                   'Five new offers', api_key => dataset.org_key('physicians')) AS article \gset
SELECT membership_api.set_article_status(:'article', 'published', dataset.org_key('physicians')) ->> 'status' AS status;
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'claims', false) \g /dev/null
SELECT title, summary FROM membership_api.articles(3);
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', false) \g /dev/null

\echo 'A provider reports uses at checkout; only members who allow tracking are named:'
SELECT k.key AS provider_key, b.id AS benefit
FROM dataset.keys k JOIN membership.providers p ON p.slug = k.provider
JOIN membership.benefits b ON b.provider_id = p.id AND b.active
JOIN membership.benefit_offers o ON o.benefit_id = b.id AND o.organisation_id = :'physicians'
WHERE k.organisation = 'physicians' ORDER BY b.id LIMIT 1 \gset
SELECT membership_api.record_benefit_usage(:benefit, m.email, reference => 'demo-' || m.external_id,
                                           api_key => :'provider_key') AS reported,
       membership.has_consent(m.id, 'usage_tracking') AS member_allows_tracking
FROM membership.members m WHERE m.organisation_id = :'physicians' AND m.email IS NOT NULL
ORDER BY m.external_id LIMIT 3;

\echo 'The organisation portal: the most used benefits this month, and members by tier:'
SELECT title, provider, uses, tracked_uses, tracked_members
FROM membership_api.benefit_usage_report(current_date, current_date, dataset.org_key('physicians'))
ORDER BY uses DESC, title LIMIT 5;
SELECT membership_tier, members, active, lapsed, personalised
FROM membership_api.active_members_report(dataset.org_key('physicians'));

\echo 'The platform: uses per benefit this month across organisations (counts only):'
SELECT title, uses, organisations FROM membership.platform_usage_report(current_date, current_date)
ORDER BY uses DESC, title LIMIT 5;

\echo 'Every periodic job, its schedule and last run (membership.schedule_jobs() hands them to pg_cron):'
SELECT job, schedule, enabled, last_status, last_rows FROM membership.job_status();
