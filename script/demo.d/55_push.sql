-- Push delivery: the push worker sends the outbox's due push notifications
-- to FCM and APNs over HTTP/2, here the local mock servers script/lib.sh
-- started (they answer by token: ok-*, dead-*, bad-*, busy-*, down-*).
\echo
\echo '== Push delivery (the push worker, against the local FCM/APNs mocks) =='
\set fcm_key `cat "$MB_PUSH_DIR/fcm_sa.key"`
\set apns_key `cat "$MB_PUSH_DIR/apns.p8"`
\set token_uri `echo "$MB_PUSH_URL/token"`
\set totals_before `curl -s "$MB_PUSH_CONTROL/totals"`

\echo 'The physicians'' app gets its FCM service account and APNs key; eight members register a phone each:'
SELECT membership.set_push_credentials(id,
           fcm_project_id => 'membership-test',
           fcm_client_email => 'push-worker@membership-test.iam.gserviceaccount.com',
           fcm_private_key => :'fcm_key', fcm_token_uri => :'token_uri',
           apns_key_id => 'MOCKKEY001', apns_team_id => 'MOCKTEAM01', apns_private_key => :'apns_key',
           apns_topic => 'app.membership.test') IS NOT NULL AS credentials_set
FROM membership.organisations WHERE slug = 'physicians';
CREATE TEMPORARY TABLE demo_push AS
SELECT m.id AS member_id, m.organisation_id, m.external_id, t.platform, t.token || m.external_id AS token
FROM (SELECT m.*, row_number() OVER (ORDER BY m.external_id) AS n
      FROM membership.members m JOIN membership.organisations o ON o.id = m.organisation_id
      WHERE o.slug = 'physicians' AND m.status = 'active' ORDER BY m.external_id LIMIT 8) m
JOIN (VALUES (1, 'fcm', 'ok-'), (2, 'apns', 'ok-'), (3, 'fcm', 'ok-'), (4, 'apns', 'ok-'),
             (5, 'fcm', 'dead-'), (6, 'apns', 'bad-'), (7, 'apns', 'busy1-'), (8, 'fcm', 'down1-')) AS t(n, platform, token)
  ON t.n = m.n;
INSERT INTO membership.devices (organisation_id, member_id, platform, token)
SELECT organisation_id, member_id, platform, token FROM demo_push;
SELECT external_id AS member, platform, token FROM demo_push ORDER BY external_id;

\echo 'A transactional notification to each (priority 1: no budget, no quiet hours), one of them'
\echo 'planned five seconds ahead:'
SELECT d.external_id AS member, e.status, e.reason, e.due_at > now() AS later
FROM demo_push d,
     LATERAL membership.enqueue_notification(d.organisation_id, d.member_id, 'push', 1, 'account',
                                             'Your membership card', 'Your 2027 card is ready', '{}',
                                             at => CASE WHEN d.external_id = (SELECT min(external_id) FROM demo_push)
                                                        THEN now() + interval '5 seconds' ELSE now() END) AS e
ORDER BY 1;

\echo 'The worker, woken at commit, sends them at once; the throttled and unavailable ones come back after'
\echo 'Retry-After (2 s) or the backoff. Waiting until nothing is left to send...'
DO $$
BEGIN
    FOR i IN 1..60 LOOP
        EXIT WHEN NOT EXISTS (SELECT FROM membership.notifications n JOIN demo_push d ON d.member_id = n.member_id
                              WHERE n.category = 'account' AND n.status IN ('queued', 'sending'));
        PERFORM pg_sleep(0.5);
    END LOOP;
END
$$;
SELECT d.external_id AS member, d.platform, d.token, n.status, n.reason, n.attempts,
       round(extract(epoch FROM n.sent_at - n.created_at)::numeric, 1) AS seconds_to_send,
       dev.active AS device_active, coalesce(dev.deactivation_reason, n.last_error) AS last_error_seen
FROM demo_push d
JOIN membership.notifications n ON n.member_id = d.member_id AND n.category = 'account'
JOIN membership.devices dev ON dev.member_id = d.member_id
ORDER BY d.external_id;

\set totals_after `curl -s "$MB_PUSH_CONTROL/totals"`
\echo 'What the mock servers received (each checked the JWT signature and claims, paths, headers and size):'
SELECT (a ->> 'fcm_requests')::int - (b ->> 'fcm_requests')::int AS fcm_requests,
       (a ->> 'apns_requests')::int - (b ->> 'apns_requests')::int AS apns_requests,
       (a ->> 'delivered')::int - (b ->> 'delivered')::int AS delivered,
       (a ->> 'oauth_exchanges')::int - (b ->> 'oauth_exchanges')::int AS oauth_token_exchanges,
       a -> 'rejected' AS rejected
FROM (SELECT :'totals_after'::jsonb AS a, :'totals_before'::jsonb AS b) t;
\echo 'The push worker, asleep until the next due row:'
SELECT worker, planned_wake IS NULL AS working, planned_wake - now() AS sleeps_for FROM membership.push_worker_plans();
