-- Reports: per organisation, usage per benefit per month and members by
-- tier and status; for the platform, counts per benefit across
-- organisations, holding nothing about any member.
SELECT fixture.new_org('rep-a') IS NOT NULL, fixture.new_org('rep-b') IS NOT NULL;
SELECT membership.set_benefit_category('rep_cat', 'Reports');
SELECT membership.create_benefit('rep-a-bank', 'rep_cat', 'Report lounge', 0.5) AS lounge,
       membership.create_benefit('rep-b-bank', 'rep_cat', 'Report ferry', 0.5) AS ferry \gset
SELECT membership.offer_benefit(fixture.org('rep-a'), :lounge), membership.offer_benefit(fixture.org('rep-b'), :ferry),
       membership.offer_benefit(fixture.org('rep-b'), :lounge);
SELECT membership_api.sync_members($$[
    {"external_id": "r1", "email": "r1@rep-a.example", "membership_tier": "full"},
    {"external_id": "r2", "email": "r2@rep-a.example", "membership_tier": "full"},
    {"external_id": "r3", "membership_tier": "student", "status": "lapsed"},
    {"external_id": "r4", "membership_tier": "student", "status": "suspended"}]$$, 'delta',
    fixture.key('rep-a:org')) ->> 'inserted' AS members;
SELECT membership_api.sync_members('[{"external_id": "x", "email": "x@rep-b.example"}]', 'delta',
                                   fixture.key('rep-b:org')) ->> 'inserted' AS members;

SELECT fixture.claims('member', 'rep-a', 'r1') AS r1, fixture.claims('member', 'rep-b', 'x') AS x,
       fixture.claims('org_admin', 'rep-b') AS admin_b \gset

-- r1 allows tracking and personalisation; r2 neither.
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'r1', false) IS NOT NULL;
SELECT membership_api.set_consent('usage_tracking', true) IS NOT NULL, membership_api.set_consent('personalisation', true) IS NOT NULL;
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL;

-- Uses this month and two months ago, by r1 (kept with the member), r2
-- and anonymous ones; and in organisation B.
SELECT count(membership_api.record_benefit_usage(:lounge, u.email, used_at => u.at, api_key => fixture.key('rep-a:provider')))
FROM (VALUES ('r1@rep-a.example', now()), ('r1@rep-a.example', now()), ('r2@rep-a.example', now()),
             (NULL, now()), ('r1@rep-a.example', date_trunc('month', now()) - interval '2 months' + interval '1 day'),
             (NULL, date_trunc('month', now()) - interval '2 months' + interval '2 days')) AS u(email, at);
SELECT membership.issue_api_key(fixture.org('rep-b'), 'rep-a-bank') AS lounge_key_b \gset
SELECT count(membership_api.record_benefit_usage(b.id, 'x@rep-b.example', api_key => b.key))
FROM (VALUES (:ferry, fixture.key('rep-b:provider')), (:ferry, fixture.key('rep-b:provider')),
             (:lounge, :'lounge_key_b')) AS b(id, key);

-- Organisation A's report: per month, all uses, those kept with a member,
-- and how many members those were.
SELECT month = date_trunc('month', current_date)::date AS this_month, title, provider, category,
       uses, tracked_uses, tracked_members
FROM membership_api.benefit_usage_report(api_key => fixture.key('rep-a:org'));
SELECT count(*) AS months FROM membership_api.benefit_usage_report(current_date, current_date, fixture.key('rep-a:org'));
SELECT fixture.try(format('SELECT * FROM membership_api.benefit_usage_report(%L, %L, %L)',
                          '2026-05-20', '2026-03-01', fixture.key('rep-a:org')));
SELECT fixture.try(format('SELECT * FROM membership_api.benefit_usage_report(%L, %L, %L)',
                          '2020-01-01', '2023-01-01', fixture.key('rep-a:org')));
SELECT fixture.try(format('SELECT * FROM membership_api.benefit_usage_report(%L, NULL, %L)',
                          'infinity', fixture.key('rep-a:org')));
SELECT fixture.try(format('SELECT * FROM membership_api.benefit_usage_report(api_key => %L)', fixture.key('rep-a:provider')));

-- Members by tier: status, recent joiners, recent benefit users (as far as
-- tracked), and with a personalised feed.
SELECT * FROM membership_api.active_members_report(fixture.key('rep-a:org'));
SELECT membership_tier, members FROM membership_api.active_members_report(fixture.key('rep-b:org'));

-- The same reports for an organisation administrator through the gateway.
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_org_admin;
SELECT set_config('request.jwt.claims', :'admin_b', false) IS NOT NULL;
SELECT title, uses, tracked_uses FROM membership_api.benefit_usage_report() ORDER BY title;
SELECT sum(members) AS members FROM membership_api.active_members_report();
RESET ROLE;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'x', false) IS NOT NULL;
SELECT fixture.try('SELECT * FROM membership_api.active_members_report()');
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL;

-- The platform's report: counts per benefit and month across
-- organisations, with the number of organisations; nothing per member.
SELECT month = date_trunc('month', current_date)::date AS this_month, title, uses, organisations
FROM membership.platform_usage_report() WHERE title LIKE 'Report%';
SELECT string_agg(p.name, ', ' ORDER BY p.ord) AS columns
FROM pg_proc f, unnest(f.proargnames, f.proargmodes) WITH ORDINALITY AS p(name, mode, ord)
WHERE f.oid = 'membership.platform_usage_report(date, date)'::regprocedure AND p.mode = 't';
SELECT fixture.try($$SELECT * FROM membership.platform_usage_report('2026-05-01', '2025-05-01')$$);
SELECT has_function_privilege('membership_platform_admin', 'membership.platform_usage_report(date, date)', 'EXECUTE') AS platform,
       has_function_privilege('membership_org_admin', 'membership.platform_usage_report(date, date)', 'EXECUTE') AS org_admin;
