-- Notifications: devices and preferences, budgets, audience sends under
-- the rules, a provider's promotion and its approval, the inbox, statistics.
\echo
\echo '== Notifications =='
SELECT id AS nurses FROM membership.organisations WHERE slug = 'nurses' \gset
SELECT key AS bank_key FROM dataset.keys WHERE organisation = 'nurses' AND provider = 'fjordbank' \gset

-- Some midwives set things up in their app: a device each, quiet hours in
-- their own time zone (a tenth), marketing consent (a third), and a few
-- opt out of pushes.  Done as the app does, through the API.
CREATE TEMPORARY TABLE demo_midwives AS
SELECT m.id, m.external_id, row_number() OVER (ORDER BY m.external_id) AS n,
       json_build_object('role', 'membership_member', 'org_id', m.organisation_id, 'member_id', m.id)::text AS claims
FROM membership.members m
WHERE m.organisation_id = :'nurses' AND m.profession = 'midwife' AND m.status = 'active' AND m.removed_at IS NULL
ORDER BY m.external_id LIMIT 300;
GRANT SELECT ON demo_midwives TO PUBLIC;
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
DO $$
DECLARE
    d record;
BEGIN
    FOR d IN SELECT * FROM demo_midwives ORDER BY n LOOP
        PERFORM set_config('request.jwt.claims', d.claims, false);
        PERFORM membership_api.register_device(CASE WHEN d.n % 2 = 0 THEN 'apns' ELSE 'fcm' END,
                                               'ok-demo-' || d.external_id);
        IF d.n % 10 = 0 THEN
            PERFORM membership_api.set_notification_preferences(quiet_start => '22:00', quiet_end => '07:00',
                time_zone => (ARRAY['Europe/Oslo', 'America/New_York', 'Asia/Tokyo'])[1 + d.n % 3]);
        END IF;
        IF d.n % 3 = 0 THEN
            PERFORM membership_api.set_consent('marketing', true);
        END IF;
        IF d.n % 25 = 0 THEN
            PERFORM membership_api.set_notification_preferences(opted_out_channels => '{push}');
        END IF;
    END LOOP;
END
$$;
SELECT set_config('request.jwt.claims', (SELECT claims FROM demo_midwives WHERE n = 10), false) \g /dev/null
\echo 'One of them, as the app shows her settings:'
SELECT membership_api.notification_preferences() AS preferences;
SELECT platform, active FROM membership_api.devices();
RESET ROLE;
RESET SESSION AUTHORIZATION;

\echo 'The platform sets the union''s budgets (push stays at 3 in any 7 days; email 2):'
SELECT membership.set_notification_budget(:'nurses', 'email', 2) \g /dev/null
SELECT * FROM membership.notification_budgets_of(:'nurses');

\echo 'The union sends editorial news (priority 2) to every midwife, three times in a day, then a fourth:'
SELECT n AS send, membership_api.send_notification_audience('{"profession": "midwife"}', 'push', 2, 'news',
           'Midwifery news #' || n, 'What changes for midwives this spring', json_build_object('issue', n)::jsonb,
           'demo-midwife-news-' || n, api_key => dataset.org_key('nurses')) - 'batch' AS outcome
FROM generate_series(1, 4) AS n;
\echo 'The fourth: each midwife''s due time against the moment her first slot of the day leaves the 7-day window:'
SELECT n.status, n.reason, count(*) AS members,
       count(*) FILTER (WHERE n.due_at = f.first_slot_frees) AS due_exactly_then
FROM membership.notifications n
JOIN LATERAL (SELECT min(o.slot_at) + interval '7 days' AS first_slot_frees FROM membership.notifications o
              WHERE o.member_id = n.member_id AND o.budgeted AND o.idempotency_key LIKE 'demo-midwife-news-%') f ON true
WHERE n.organisation_id = :'nurses' AND n.idempotency_key LIKE 'demo-midwife-news-4:%'
GROUP BY 1, 2 ORDER BY 3 DESC;

\echo 'A security notice (priority 1) to one midwife bypasses the budget and quiet hours; replaying its key changes nothing:'
SELECT membership_api.send_notification(external_id, 'push', 1, 'security', 'New sign-in', 'Was it you?',
                                        idempotency_key => 'demo-signin-1', api_key => dataset.org_key('nurses'))
           - 'notification' - 'due_at' AS first,
       membership_api.send_notification(external_id, 'push', 1, 'security', 'New sign-in', 'Was it you?',
                                        idempotency_key => 'demo-signin-1', api_key => dataset.org_key('nurses'))
           - 'notification' - 'due_at' AS replay
FROM demo_midwives WHERE n = 10;

\echo 'The bank proposes a promotion to students; it waits for the union:'
SELECT membership_api.send_promotion('{"tier": "student"}', 'Student account', 'No fees for members',
                                     'deals', api_key => :'bank_key') AS promotion \gset
SELECT :'promotion'::jsonb - 'promotion' AS promotion;
SELECT provider, title, audience, recipients FROM membership_api.pending_promotions(dataset.org_key('nurses'));
\echo 'The union approves: the rules run now (marketing consent, budget, quiet hours):'
SELECT membership_api.approve_notification((:'promotion'::jsonb ->> 'promotion')::bigint, dataset.org_key('nurses'))
           - 'batch' AS approved;

\echo 'An in-app message reaches everyone at once, quiet hours or not, and shows in the inbox:'
SELECT membership_api.send_notification_audience('{"profession": "midwife"}', 'in_app', 2, 'news',
           'Survey', 'Tell us about your working hours', api_key => dataset.org_key('nurses')) - 'batch' AS in_app;
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', (SELECT claims FROM demo_midwives WHERE n = 10), false) \g /dev/null
SELECT channel, category, title FROM membership_api.notifications(5);
RESET ROLE;
RESET SESSION AUTHORIZATION;

\echo 'The union''s delivery statistics for the portal, and the queue''s health for the platform:'
SELECT channel, status, reason, notifications
FROM membership_api.notification_stats(api_key => dataset.org_key('nurses'));
SELECT channel, due, in_flight, deferred, next_due IS NOT NULL AS has_later_work, awaiting_approval
FROM membership.notification_queue() WHERE channel IN ('push', 'in_app');
