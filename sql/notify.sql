-- Notifications, part 1: devices, preferences, budgets, push credentials,
-- the enqueue rules of each priority, audiences, approval, the inbox,
-- cancellation and statistics.  The rules run on an explicit clock ("at"),
-- so every deferral below is an exact, known moment.
SET timezone = 'UTC';
-- the queue's health is platform-wide: what other suites left is the baseline
CREATE TEMPORARY TABLE queue_before AS SELECT * FROM membership.notification_queue('2030-01-10 12:00Z');
CREATE FUNCTION pg_temp.queue_change() RETURNS TABLE (channel text, due bigint, in_flight bigint,
                                                      lease_expired bigint, deferred bigint, awaiting_approval bigint)
    LANGUAGE sql AS $$
    SELECT q.channel, q.due - b.due, q.in_flight - b.in_flight, q.lease_expired - b.lease_expired,
           q.deferred - b.deferred, q.awaiting_approval - b.awaiting_approval
    FROM membership.notification_queue('2030-01-10 12:00Z') AS q JOIN queue_before b USING (channel)
    ORDER BY array_position(membership.notification_channels(), q.channel)
$$;
SELECT fixture.new_org('nt-a') IS NOT NULL AS a, fixture.new_org('nt-b') IS NOT NULL AS b;
SELECT membership_api.sync_members($$[
    {"external_id": "n1", "email": "n1@nt.example", "membership_tier": "full", "profession": "Nurse"},
    {"external_id": "n2", "email": "n2@nt.example", "membership_tier": "student", "profession": "nurse"},
    {"external_id": "n3", "email": "n3@nt.example", "membership_tier": "full", "profession": "Pilot"},
    {"external_id": "n4", "email": "n4@nt.example", "membership_tier": "retired", "profession": "pilot"},
    {"external_id": "gone", "email": "gone@nt.example", "membership_tier": "full"}]$$,
    'delta', fixture.key('nt-a:org')) ->> 'inserted' AS inserted;
SELECT membership_api.sync_members('[{"external_id": "b1", "email": "b1@nt.example"}]', 'delta',
                                   fixture.key('nt-b:org')) ->> 'inserted' AS inserted_b;
SELECT fixture.org('nt-a') AS org \gset
SELECT membership.find_member(:'org', 'n1') AS n1, membership.find_member(:'org', 'n2') AS n2,
       membership.find_member(:'org', 'n3') AS n3, membership.find_member(:'org', 'n4') AS n4,
       membership.find_member(:'org', 'gone') AS gone,
       membership.find_member(fixture.org('nt-b'), 'b1') AS b1 \gset
SELECT fixture.claims('member', 'nt-a', 'n1') AS c1, fixture.claims('member', 'nt-a', 'n2') AS c2,
       fixture.claims('member', 'nt-a', 'n3') AS c3 \gset

-- Each notification below, on the clock "at", and what became of it.
CREATE FUNCTION pg_temp.send(member uuid, priority integer, at timestamptz, channel text DEFAULT 'push',
                             category text DEFAULT 'news', not_after timestamptz DEFAULT NULL,
                             idempotency_key text DEFAULT NULL)
    RETURNS TABLE (status text, reason text, due_at text)
    LANGUAGE sql AS $$
    SELECT e.status, e.reason, to_char(e.due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || 'Z'
    FROM membership.enqueue_notification(fixture.org('nt-a'), member, channel, priority, category,
                                         'Title', 'Body', '{"k": 1}', 'organisation', idempotency_key,
                                         not_after, at) AS e
$$;

-------------------------------------------------------------------------
-- Devices, preferences and consent (members, through the gateway)
-------------------------------------------------------------------------
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'c1', false) IS NOT NULL AS as_n1;
SELECT membership_api.register_device('fcm', 'fcm-token-1') = membership_api.register_device('fcm', 'fcm-token-1')
    AS registering_twice_is_one_device;
SELECT membership_api.register_device('apns', 'a1b2c3d4e5f6') IS NOT NULL AS apns;
SELECT membership_api.unregister_device('fcm-token-1') AS unregistered,
       membership_api.unregister_device('fcm-token-1') AS again;
SELECT platform, token, active, deactivation_reason FROM membership_api.devices() ORDER BY platform;
-- registering a deactivated token revives it
SELECT membership_api.register_device('fcm', 'fcm-token-1') IS NOT NULL AS revived;
SELECT platform, token, active, deactivation_reason FROM membership_api.devices() ORDER BY platform;
SELECT fixture.try($$SELECT membership_api.register_device('wns', 'tok')$$);
SELECT fixture.try($$SELECT membership_api.register_device('fcm', 'has space')$$);
SELECT fixture.try($$SELECT membership_api.register_device('fcm', '')$$);
SELECT fixture.try($$SELECT membership_api.register_device(NULL, 'tok')$$);
SELECT fixture.try($$SELECT membership_api.unregister_device(NULL)$$);

SELECT membership_api.notification_preferences() AS defaults;
-- quiet from 22:00 to 07:00 in New York (UTC-5 in January)
SELECT membership_api.set_notification_preferences(quiet_start => '22:00', quiet_end => '07:00',
                                                   time_zone => 'America/New_York');
SELECT membership_api.set_notification_preferences(muted_categories => '{quiz, quiz}');
SELECT fixture.try($$SELECT membership_api.set_notification_preferences(opted_out_channels => '{pigeon}')$$);
SELECT fixture.try($$SELECT membership_api.set_notification_preferences(muted_categories => '{"Bad Category"}')$$);
SELECT fixture.try($$SELECT membership_api.set_notification_preferences(muted_categories => '{NULL}')$$);
SELECT fixture.try($$SELECT membership_api.set_notification_preferences(time_zone => 'Mars/Olympus')$$);
SELECT fixture.try($$SELECT membership_api.set_notification_preferences(time_zone => 'UTC+3')$$);
SELECT fixture.try($$SELECT membership_api.set_notification_preferences(quiet_start => '08:00', quiet_end => '08:00')$$);
SELECT fixture.try($$SELECT membership_api.set_notification_preferences(quiet_start => '08:00', no_quiet_hours => true)$$);
SELECT membership_api.notification_preferences() AS unchanged_by_bad_input;

SELECT set_config('request.jwt.claims', :'c2', false) IS NOT NULL AS as_n2;
SELECT fixture.try($$SELECT membership_api.set_notification_preferences(quiet_start => '23:00')$$);
SELECT membership_api.set_notification_preferences(opted_out_channels => '{push}') ->> 'opted_out_channels' AS n2_opts_out;
SELECT membership_api.set_consent('marketing', true) ->> 'marketing' AS n2_marketing;

SELECT set_config('request.jwt.claims', :'c3', false) IS NOT NULL AS as_n3;
-- quiet from 23:00 to 06:30 in Tokyo (UTC+9): 14:00 to 21:30 UTC
SELECT membership_api.set_notification_preferences(quiet_start => '23:00', quiet_end => '06:30',
                                                   time_zone => 'Asia/Tokyo') -> 'quiet_hours' AS n3_quiet;
SELECT membership_api.set_consent('marketing', true) ->> 'marketing' AS n3_marketing;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL AS cleared;
RESET ROLE;
RESET SESSION AUTHORIZATION;

-------------------------------------------------------------------------
-- Budgets and push credentials (platform)
-------------------------------------------------------------------------
SELECT * FROM membership.notification_budgets_of(:'org');
SELECT membership.set_notification_budget(:'org', 'email', 2);
SELECT membership.set_notification_budget(:'org', 'sms', NULL);
SELECT channel, per_week, is_default FROM membership.notification_budgets_of(:'org') WHERE channel IN ('email', 'sms');
SELECT fixture.try(format('SELECT membership.set_notification_budget(%L, %L, 0)', :'org', 'push'));
SELECT fixture.try(format('SELECT membership.set_notification_budget(%L, %L, 3)', :'org', 'fax'));
SELECT fixture.try($$SELECT membership.set_notification_budget(NULL, 'push', 3)$$);

CREATE TEMPORARY TABLE pem AS
SELECT '-----BEGIN PRIVATE KEY-----' || chr(10) || encode(sha512('rsa') || sha512('key'), 'base64') || chr(10)
       || '-----END PRIVATE KEY-----' || chr(10) AS key;
SELECT membership.set_push_credentials(:'org', fcm_project_id => 'nt-project', fcm_client_email => 'push@nt-project.example',
                                       fcm_private_key => (SELECT key FROM pem)) - 'updated_at' AS fcm_only;
SELECT membership.set_push_credentials(:'org', apns_key_id => 'ABCDE12345', apns_team_id => 'TEAM123456',
                                       apns_private_key => (SELECT key FROM pem), apns_topic => 'org.nt.members',
                                       apns_sandbox => true) - 'updated_at' AS both;
SELECT fcm_token_uri, apns_topic, apns_sandbox FROM membership.push_credentials WHERE organisation_id = :'org';
SELECT fixture.try(format('SELECT membership.set_push_credentials(%L, fcm_project_id => %L)', :'org', 'nt-project'));
SELECT fixture.try(format('SELECT membership.set_push_credentials(%L, fcm_project_id => %L, fcm_client_email => %L, fcm_private_key => %L)',
                          :'org', 'nt-project', 'push@nt-project.example', 'not a key'));
SELECT fixture.try(format('SELECT membership.set_push_credentials(%L, fcm_project_id => %L, fcm_client_email => %L, fcm_private_key => %L)',
                          :'org', 'nt-project', 'push@nt-project.example',
                          replace((SELECT key FROM pem), 'END PRIVATE', 'END PUBLIC')));
SELECT fixture.try(format('SELECT membership.set_push_credentials(%L, fcm_project_id => %L, fcm_client_email => %L, fcm_private_key => %L)',
                          :'org', 'Bad Project!', 'push@nt-project.example', (SELECT key FROM pem)));
SELECT fixture.try(format('SELECT membership.set_push_credentials(%L, apns_key_id => %L, apns_team_id => %L, apns_private_key => %L, apns_topic => %L)',
                          :'org', 'short', 'TEAM123456', (SELECT key FROM pem), 'org.nt.members'));
SELECT fixture.try(format('SELECT membership.set_push_credentials(%L, apns_key_id => %L, apns_team_id => %L, apns_private_key => %L, apns_topic => %L)',
                          :'org', 'ABCDE12345', 'TEAM123456', '-----BEGIN PRIVATE KEY-----' || chr(10) || '!!!' || chr(10) || '-----END PRIVATE KEY-----', 'org.nt.members'));
SELECT fixture.try(format('SELECT membership.set_push_credentials(%L)', :'org'));
-- no function of the extension returns a key
SELECT count(*) AS functions_returning_keys FROM pg_proc p
WHERE p.pronamespace IN ('membership'::regnamespace, 'membership_api'::regnamespace)
  AND p.prosrc ~ 'private_key' AND p.prosrc ~* 'RETURN[^;]*private_key';

-------------------------------------------------------------------------
-- Priorities and the budget (push: 3 budgeted deliveries in any 7 days)
-------------------------------------------------------------------------
-- n4 has no preferences (UTC, no quiet hours) and no marketing consent.
SELECT 'p2 #' || i AS send, s.* FROM generate_series(1, 3) AS i,
    LATERAL pg_temp.send(:'n4', 2, timestamptz '2030-01-07 09:00Z' + (i - 1) * interval '1 day') AS s;
-- the budget is full: the next priority 2 waits for the EXACT moment the
-- first slot leaves the 7-day window (Jan 7 09:00 + 7 days)
SELECT * FROM pg_temp.send(:'n4', 2, '2030-01-10 12:00Z');
-- and the one after that for the second slot, Jan 8 09:00 + 7 days
SELECT * FROM pg_temp.send(:'n4', 2, '2030-01-10 12:00Z');
-- a slot deferred to the future counts too: the third frees at Jan 16 09:00
SELECT * FROM pg_temp.send(:'n4', 2, '2030-01-10 12:00Z');
-- priority 1 bypasses the budget
SELECT * FROM pg_temp.send(:'n4', 1, '2030-01-10 12:00Z', category => 'security');
-- priority 3 needs marketing consent (n4 never gave it) ...
SELECT * FROM pg_temp.send(:'n4', 3, '2030-01-10 12:00Z');
-- ... and with it (n3), a slot free now, else it is dropped
SELECT 'p3 #' || i AS send, s.* FROM generate_series(1, 4) AS i,
    LATERAL pg_temp.send(:'n3', 3, timestamptz '2030-01-07 03:00Z' + (i - 1) * interval '1 hour') AS s;
-- not_after earlier than the delivery time: dropped, no slot taken
SELECT * FROM pg_temp.send(:'n4', 2, '2030-01-10 12:00Z', not_after => '2030-01-20Z');
SELECT * FROM pg_temp.send(:'n4', 2, '2030-01-10 12:00Z', not_after => '2030-01-30Z');
-- every 7-day window of n4 holds at most 3 budgeted rows
SELECT n.slot_at AS window_start, count(*) AS slots_in_window
FROM membership.notifications n JOIN membership.notifications o
  ON o.member_id = n.member_id AND o.channel = n.channel AND o.budgeted
 AND o.slot_at >= n.slot_at AND o.slot_at < n.slot_at + interval '7 days'
WHERE n.member_id = :'n4' AND n.budgeted
GROUP BY n.slot_at ORDER BY 1;

-------------------------------------------------------------------------
-- Quiet hours in the member's own time zone
-------------------------------------------------------------------------
-- n1: 22:00-07:00 New York.  Jan 7 02:30Z is Jan 6 21:30 there: not quiet.
SELECT * FROM pg_temp.send(:'n1', 2, '2030-01-07 02:30Z');
-- 03:00Z is 22:00 in New York: quiet until 07:00 there, 12:00Z (the next
-- UTC day's morning, the same local night)
SELECT * FROM pg_temp.send(:'n1', 2, '2030-01-07 03:00Z');
SELECT * FROM pg_temp.send(:'n1', 2, '2030-01-07 11:59Z');
-- priority 1 ignores quiet hours
SELECT * FROM pg_temp.send(:'n1', 1, '2030-01-07 04:00Z', category => 'security');
-- the budget is now full until Jan 14 02:30Z, which is 21:30 in New York:
-- the slot frees outside quiet hours, so that is the moment
SELECT * FROM pg_temp.send(:'n1', 2, '2030-01-07 13:00Z');
-- the next slot frees Jan 14 12:00Z = 07:00 New York
SELECT * FROM pg_temp.send(:'n1', 2, '2030-01-07 13:00Z');
-- n3 (Tokyo, 23:00-06:30, consented): at 2030-01-07 14:30Z it is 23:30 in
-- Tokyo, so priority 3 waits for 06:30 Tokyo = 21:30Z, and takes its slot then
SELECT * FROM pg_temp.send(:'n3', 3, '2030-01-14 14:30Z');
-- across the date line: in Tokyo at 2030-01-14 21:00Z it is already
-- Jan 15 06:00, still quiet until 06:30
SELECT * FROM pg_temp.send(:'n3', 2, '2030-01-14 21:00Z');
-- across a daylight saving change: quiet hours in Oslo 01:00-03:30 on the
-- night clocks go forward (2030-03-31 02:00 -> 03:00): 03:30 local is 01:30Z
SELECT 1 AS tenant_set FROM membership.set_tenant(:'org');
UPDATE membership.notification_preferences SET quiet_start = '01:00', quiet_end = '03:30', time_zone = 'Europe/Oslo'
WHERE member_id = :'n1';
SELECT * FROM pg_temp.send(:'n1', 1, '2030-03-31 00:30Z', category => 'security');
SELECT * FROM pg_temp.send(:'n1', 2, '2030-03-31 00:30Z');

-------------------------------------------------------------------------
-- Preferences, channels, idempotency
-------------------------------------------------------------------------
-- n2 opted out of push: suppressed whatever the priority
SELECT * FROM pg_temp.send(:'n2', 1, '2030-01-07 09:00Z', category => 'security');
-- n1 muted "quiz"
SELECT * FROM pg_temp.send(:'n1', 2, '2030-01-07 09:00Z', category => 'quiz');
-- a removed member
SELECT membership_api.sync_members($$[{"external_id": "n1", "email": "n1@nt.example", "membership_tier": "full", "profession": "Nurse"},
    {"external_id": "n2", "email": "n2@nt.example", "membership_tier": "student", "profession": "nurse"},
    {"external_id": "n3", "email": "n3@nt.example", "membership_tier": "full", "profession": "Pilot"},
    {"external_id": "n4", "email": "n4@nt.example", "membership_tier": "retired", "profession": "pilot"}]$$,
    'full', fixture.key('nt-a:org')) ->> 'removed' AS removed;
SELECT * FROM pg_temp.send(:'gone', 1, '2030-01-07 09:00Z');
-- in_app is delivered at enqueue (no quiet hours: it interrupts nobody);
-- email waits for an external sender, under its own budget (2 here)
SELECT * FROM pg_temp.send(:'n2', 2, '2030-01-07 09:00Z', channel => 'in_app');
SELECT 'email #' || i AS send, s.* FROM generate_series(1, 3) AS i,
    LATERAL pg_temp.send(:'n2', 2, timestamptz '2030-01-07 09:00Z' + i * interval '1 minute', channel => 'email') AS s;
-- in_app under a budget of 1: the second waits for next week, and
-- deliver_in_app() marks it sent when it falls due
SELECT membership.set_notification_budget(:'org', 'in_app', 1);
SELECT 'in_app #' || i AS send, s.* FROM generate_series(1, 2) AS i,
    LATERAL pg_temp.send(:'n4', 2, timestamptz '2025-01-07 09:00Z' + i * interval '1 minute', channel => 'in_app') AS s;
SELECT membership.deliver_in_app('2025-01-14 09:00Z') AS delivered_before_due,
       membership.deliver_in_app('2025-01-14 09:01Z') AS delivered_when_due;
SELECT status, reason, sent_at FROM membership.notifications WHERE member_id = :'n4' AND channel = 'in_app' ORDER BY id;
SELECT membership.set_notification_budget(:'org', 'in_app', NULL);
-- sms is unlimited here
SELECT 'sms #' || i AS send, s.* FROM generate_series(1, 4) AS i,
    LATERAL pg_temp.send(:'n2', 2, timestamptz '2030-01-07 09:00Z' + i * interval '1 minute', channel => 'sms') AS s;
-- a replayed idempotency key returns the first row and its status, whatever changed
SELECT * FROM pg_temp.send(:'n4', 1, '2030-01-10 12:00Z', category => 'security', idempotency_key => 'pw-reset-1');
SELECT (SELECT notification_id FROM membership.enqueue_notification(:'org', :'n4', 'push', 1, 'security', 'Title', 'Body',
            idempotency_key => 'pw-reset-1', at => '2030-01-10 12:00Z'))
     = (SELECT notification_id FROM membership.enqueue_notification(:'org', :'n3', 'sms', 3, 'other', 'Other', 'Other',
            idempotency_key => 'pw-reset-1', at => '2030-02-01 12:00Z')) AS replay_returns_first_row;
SELECT count(*) AS rows_under_key FROM membership.notifications WHERE idempotency_key = 'pw-reset-1';

-------------------------------------------------------------------------
-- Bad input changes nothing
-------------------------------------------------------------------------
SELECT count(*) AS before FROM membership.notifications \gset
SELECT fixture.try(format('SELECT membership.enqueue_notification(%L, %L, %L, 2, %L, %L, %L)', :'org', :'n1', 'fax', 'news', 't', 'b'));
SELECT fixture.try(format('SELECT membership.enqueue_notification(%L, %L, %L, 4, %L, %L, %L)', :'org', :'n1', 'push', 'news', 't', 'b'));
SELECT fixture.try(format('SELECT membership.enqueue_notification(%L, %L, %L, 0, %L, %L, %L)', :'org', :'n1', 'push', 'news', 't', 'b'));
SELECT fixture.try(format('SELECT membership.enqueue_notification(%L, %L, %L, 2, %L, %L, %L)', :'org', :'n1', 'push', 'News!', 't', 'b'));
SELECT fixture.try(format('SELECT membership.enqueue_notification(%L, %L, %L, 2, %L, %L, %L)', :'org', :'n1', 'push', 'news', 't', repeat('x', 4100)));
SELECT fixture.try(format('SELECT membership.enqueue_notification(%L, %L, %L, 2, %L, %L, %L, %L)', :'org', :'n1', 'push', 'news', 't', 'b',
                          jsonb_build_object('blob', repeat('y', 4100))));
SELECT fixture.try(format('SELECT membership.enqueue_notification(%L, %L, %L, 2, %L, %L, %L, %L)', :'org', :'n1', 'push', 'news', 't', 'b', '[1, 2]'));
SELECT fixture.try(format('SELECT membership.enqueue_notification(%L, %L, %L, 2, %L, %L, %L, %L)', :'org', :'n1', 'push', 'news', 't', 'b', '"text"'));
SELECT fixture.try(format('SELECT membership.enqueue_notification(%L, %L, %L, 2, %L, %L, %L, sender => %L)', :'org', :'n1', 'push', 'news', 't', 'b', 'mallory'));
SELECT fixture.try(format('SELECT membership.enqueue_notification(%L, %L, %L, 2, %L, %L, %L, sender => %L)', :'org', :'n1', 'push', 'news', 't', 'b', 'provider'));
SELECT fixture.try(format('SELECT membership.enqueue_notification(%L, %L, %L, 2, %L, %L, %L)', :'org', :'n1', 'push', 'news', '  ', 'b'));
SELECT fixture.try(format('SELECT membership.enqueue_notification(%L, %L, %L, 2, %L, %L, %L)', :'org', :'b1', 'push', 'news', 't', 'b'));
SELECT fixture.try(format('SELECT membership.enqueue_notification(%L, NULL, %L, 2, %L, %L, %L)', :'org', 'push', 'news', 't', 'b'));
SELECT fixture.try(format('SELECT membership.enqueue_notification(%L, %L, NULL, 2, %L, %L, %L)', :'org', :'n1', 'news', 't', 'b'));
SELECT fixture.try(format('SELECT membership.enqueue_notification(%L, %L, %L, NULL, %L, %L, %L)', :'org', :'n1', 'push', 'news', 't', 'b'));
SELECT fixture.try(format('SELECT membership.enqueue_notification(%L, %L, %L, 2, NULL, %L, %L)', :'org', :'n1', 'push', 't', 'b'));
SELECT fixture.try(format('SELECT membership.enqueue_notification(%L, %L, %L, 2, %L, NULL, %L)', :'org', :'n1', 'push', 'news', 'b'));
SELECT fixture.try(format('SELECT membership.enqueue_notification(%L, %L, %L, 2, %L, %L, %L, NULL)', :'org', :'n1', 'push', 'news', 't', 'b'));
SELECT fixture.try(format('SELECT membership.enqueue_notification(NULL, %L, %L, 2, %L, %L, %L)', :'n1', 'push', 'news', 't', 'b'));
SELECT fixture.try(format('SELECT membership.enqueue_notification(%L, %L, %L, 2, %L, %L, %L, idempotency_key => %L)', :'org', :'n1', 'push', 'news', 't', 'b', ''));
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT fixture.try(format('SELECT membership.enqueue_notification(%L, %L, %L, 2, %L, %L, %L)', :'org', :'n1', 'push', 'news', 't', 'b'));
ROLLBACK;
SELECT count(*) - :before AS rows_added_by_bad_input FROM membership.notifications;

-------------------------------------------------------------------------
-- Audiences (set-based): all, tier, profession, category interest
-------------------------------------------------------------------------
SELECT membership.set_benefit_category('nt_travel', 'Travel') IS NOT NULL AS category;
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'c3', false) IS NOT NULL AS as_n3;
SELECT membership_api.set_category_preference('nt_travel', 'bookmarked') ->> 'nt_travel' AS n3_likes_travel;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL AS cleared;
RESET ROLE;
RESET SESSION AUTHORIZATION;
-- (in_app: delivered at once, so the counts show who was reached)
SELECT a.audience, membership.enqueue_notification_audience(:'org', a.audience, 'in_app', 2, 'news', 'Hi', 'All of you',
                                                          at => '2030-02-01 12:00Z') - 'batch' AS outcome
FROM (VALUES ('{"all": true}'::jsonb), ('{"tier": "full"}'), ('{"profession": "NURSE"}'), ('{"interest": "nt_travel"}'),
             ('{"tier": "nobody"}')) AS a(audience);
SELECT m.external_id, count(*) AS in_app_received
FROM membership.notifications n JOIN membership.members m ON m.id = n.member_id
WHERE n.channel = 'in_app' AND n.body = 'All of you'
GROUP BY 1 ORDER BY 1;
-- a push to everyone at a moment of quiet hours for some, under the budget for others
SELECT membership.enqueue_notification_audience(:'org', '{"all": true}', 'push', 2, 'news', 'Hi', 'Everyone',
                                                at => '2030-01-08 03:30Z') - 'batch' AS push_outcome;
-- replaying the audience key returns the first outcome and sends nothing new
SELECT membership.enqueue_notification_audience(:'org', '{"all": true}', 'push', 3, 'deals', 'Deal', 'Once',
                                                idempotency_key => 'deal-1', at => '2030-02-20 12:00Z') - 'batch' AS first,
       membership.enqueue_notification_audience(:'org', '{"all": true}', 'push', 3, 'deals', 'Deal', 'Once',
                                                idempotency_key => 'deal-1', at => '2030-02-20 12:00Z') - 'batch' AS replay;
SELECT fixture.try(format('SELECT membership.enqueue_notification_audience(%L, %L, %L, 2, %L, %L, %L)', :'org', '{"all": false}', 'push', 'news', 't', 'b'));
SELECT fixture.try(format('SELECT membership.enqueue_notification_audience(%L, %L, %L, 2, %L, %L, %L)', :'org', '{"tier": "full", "profession": "x"}', 'push', 'news', 't', 'b'));
SELECT fixture.try(format('SELECT membership.enqueue_notification_audience(%L, %L, %L, 2, %L, %L, %L)', :'org', '{"city": "Oslo"}', 'push', 'news', 't', 'b'));
SELECT fixture.try(format('SELECT membership.enqueue_notification_audience(%L, %L, %L, 2, %L, %L, %L)', :'org', '{"interest": "nope"}', 'push', 'news', 't', 'b'));
SELECT fixture.try(format('SELECT membership.enqueue_notification_audience(%L, %L, %L, 2, %L, %L, %L)', :'org', '{"tier": 3}', 'push', 'news', 't', 'b'));
SELECT fixture.try(format('SELECT membership.enqueue_notification_audience(%L, NULL, %L, 2, %L, %L, %L)', :'org', 'push', 'news', 't', 'b'));

-------------------------------------------------------------------------
-- Organisations and providers through the API
-------------------------------------------------------------------------
SELECT membership_api.send_notification('n4', 'push', 1, 'security', 'New login', 'Was it you?',
                                        api_key => fixture.key('nt-a:org')) - 'notification' - 'due_at' AS org_sends;
SELECT fixture.try(format('SELECT membership_api.send_notification(%L, %L, 1, %L, %L, %L, api_key => %L)',
                          'b1', 'push', 'security', 't', 'b', fixture.key('nt-a:org')));
SELECT fixture.try(format('SELECT membership_api.send_notification(%L, %L, 1, %L, %L, %L, api_key => %L)',
                          'n4', 'push', 'security', 't', 'b', fixture.key('nt-a:provider')));
SELECT membership_api.send_notification_audience('{"profession": "pilot"}', 'sms', 2, 'news', 'Hi', 'Pilots',
                                                 api_key => fixture.key('nt-a:org')) - 'batch' AS org_audience;
-- a provider's promotion waits for the organisation's approval
SELECT membership_api.send_promotion('{"tier": "full"}', '20% off flights', 'This week only', 'deals',
                                     api_key => fixture.key('nt-a:provider')) AS promo \gset
SELECT :'promo'::jsonb - 'promotion' AS promotion;
SELECT (:'promo'::jsonb ->> 'promotion')::bigint AS promo_id \gset
SELECT membership_api.send_promotion('{"all": true}', 'Cheap loans', 'Really cheap', 'deals',
                                     api_key => fixture.key('nt-a:provider')) ->> 'promotion' AS promo2_id \gset
SELECT fixture.try(format('SELECT membership_api.send_promotion(%L, %L, %L, api_key => %L)', '{"all": true}', 't', 'b',
                          fixture.key('nt-a:org')));
SELECT status, reason, due_at, budgeted, count(*) FROM membership.notifications
WHERE batch_id = :promo_id GROUP BY 1, 2, 3, 4;
SELECT provider, category, title, audience, recipients FROM membership_api.pending_promotions(fixture.key('nt-a:org'));
SELECT count(*) AS pending_seen_by_b FROM membership_api.pending_promotions(fixture.key('nt-b:org'));
-- approval runs the rules now: n1 has no marketing consent, n3 has
SELECT membership_api.approve_notification(:promo_id, fixture.key('nt-a:org')) - 'batch' AS approved;
SELECT m.external_id, n.status, n.reason FROM membership.notifications n JOIN membership.members m ON m.id = n.member_id
WHERE n.batch_id = :promo_id ORDER BY 1;
SELECT regexp_replace(fixture.try(format('SELECT membership_api.approve_notification(%s, %L)', :promo_id, fixture.key('nt-a:org'))), 'promotion [0-9]+', 'promotion N') AS try;
SELECT regexp_replace(fixture.try(format('SELECT membership_api.approve_notification(%s, %L)', :promo2_id, fixture.key('nt-b:org'))), 'promotion [0-9]+', 'promotion N') AS try;
SELECT fixture.try(format('SELECT membership_api.approve_notification(NULL, %L)', fixture.key('nt-a:org')));
SELECT membership_api.reject_notification(:promo2_id, fixture.key('nt-a:org')) - 'batch' AS rejected;
SELECT regexp_replace(fixture.try(format('SELECT membership_api.reject_notification(%s, %L)', :promo2_id, fixture.key('nt-a:org'))), 'promotion [0-9]+', 'promotion N') AS try;
SELECT count(*) AS still_pending FROM membership_api.pending_promotions(fixture.key('nt-a:org'));

-------------------------------------------------------------------------
-- The inbox, cancellation, statistics and the queue
-------------------------------------------------------------------------
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'c2', false) IS NOT NULL AS as_n2;
SELECT channel, category, title, body FROM membership_api.notifications();
SELECT count(*) AS page_of_one FROM membership_api.notifications(max_results => 1);
SELECT fixture.try($$SELECT * FROM membership_api.notifications(max_results => 0)$$);
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL AS cleared;
RESET ROLE;
RESET SESSION AUTHORIZATION;

-- later decisions apply to what is still waiting: n3 withdraws marketing
-- consent (her deferred priority 3 push is dropped) and mutes "news" (her
-- waiting news are suppressed); both give their slots back
SELECT count(*) FILTER (WHERE priority = 3) AS n3_waiting_marketing,
       count(*) FILTER (WHERE category = 'news') AS n3_waiting_news
FROM membership.notifications WHERE member_id = :'n3' AND status IN ('queued', 'deferred') AND reason <> 'awaiting_approval';
SET SESSION AUTHORIZATION authenticator;
SET ROLE membership_member;
SELECT set_config('request.jwt.claims', :'c3', false) IS NOT NULL AS as_n3;
SELECT membership_api.set_consent('marketing', false) ->> 'marketing' AS n3_marketing;
SELECT membership_api.set_notification_preferences(muted_categories => '{news}') -> 'muted_categories' AS n3_muted;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL AS cleared;
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT status, reason, budgeted, count(*) FROM membership.notifications
WHERE member_id = :'n3' AND (priority = 3 OR category = 'news') AND reason IN ('no_marketing_consent', 'category_muted')
GROUP BY 1, 2, 3 ORDER BY 1, 2;
SELECT count(*) AS n3_still_waiting FROM membership.notifications
WHERE member_id = :'n3' AND status IN ('queued', 'deferred') AND reason <> 'awaiting_approval' AND (priority = 3 OR category = 'news');
SELECT membership.cancel_notifications(:'org', :'n4') AS cancelled_for_n4;
SELECT count(*) FILTER (WHERE status IN ('queued', 'deferred')) AS n4_waiting,
       count(*) FILTER (WHERE reason = 'cancelled' AND NOT budgeted) AS n4_cancelled_and_released
FROM membership.notifications WHERE member_id = :'n4';
-- the cancelled rows gave their slots back: n4 has a free slot again
SELECT * FROM pg_temp.send(:'n4', 2, '2030-01-10 12:00Z');
-- a provider's promotion to one member, enqueued by the platform, waits for approval
SELECT status, reason, due_at FROM membership.enqueue_notification(:'org', :'n3', 'push', 3, 'deals', 'Deal', 'Just for you',
                                                                   sender => 'provider', at => '2030-01-10 12:00Z');
SELECT audience ? 'member' AS for_one_member, recipients FROM membership_api.pending_promotions(fixture.key('nt-a:org'));
SELECT * FROM membership.notification_stats(:'org') WHERE channel <> 'in_app';
SELECT * FROM membership_api.notification_stats(api_key => fixture.key('nt-b:org'));
SELECT fixture.try(format('SELECT * FROM membership.notification_stats(%L, %L, %L)', :'org', '2030-02-01', '2030-01-01'));
SELECT * FROM pg_temp.queue_change();
SELECT channel, oldest_due IS NOT NULL AS has_oldest_due, next_due IS NOT NULL AS has_next_due
FROM membership.notification_queue('2030-01-10 12:00Z') WHERE channel = 'push';
-- two rows claimed by a push worker: one lease running, one run out (due again)
SELECT 1 AS tenant_set FROM membership.set_tenant(:'org');
UPDATE membership.notifications SET status = 'sending', lease_until = '2030-01-10 12:05Z'
WHERE id = (SELECT min(id) FROM membership.notifications WHERE organisation_id = :'org' AND channel = 'sms' AND status = 'queued');
UPDATE membership.notifications SET status = 'sending', lease_until = '2030-01-10 11:55Z'
WHERE id = (SELECT max(id) FROM membership.notifications WHERE organisation_id = :'org' AND channel = 'sms' AND status = 'queued');
SELECT channel, due, in_flight, lease_expired FROM pg_temp.queue_change() WHERE channel = 'sms';
SELECT membership.cancel_notifications(:'org') AS cancelled_for_everyone;
SELECT count(*) AS sending_left_alone FROM membership.notifications WHERE organisation_id = :'org' AND status = 'sending';
SELECT channel, due, deferred, awaiting_approval FROM pg_temp.queue_change();
