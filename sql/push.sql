-- The push worker's SQL side, without the worker (it serves another
-- database): what push_claim claims, settles and returns, and what
-- push_record makes of the services' answers.
SELECT fixture.new_org('push-a') AS org \gset
INSERT INTO membership.members (organisation_id, external_id)
SELECT :'org', 'p' || i FROM generate_series(1, 6) AS i;
CREATE TEMPORARY VIEW m AS
SELECT external_id, id FROM membership.members WHERE organisation_id = :'org';
-- p1: FCM and APNs devices; p2: one APNs device; p3: no device; p4..p6: one FCM device each
INSERT INTO membership.devices (organisation_id, member_id, platform, token)
SELECT :'org', m.id, d.platform, d.token
FROM m JOIN (VALUES ('p1', 'fcm', 'f1'), ('p1', 'apns', 'a1'), ('p2', 'apns', 'a2'),
                    ('p4', 'fcm', 'f4'), ('p5', 'fcm', 'f5'), ('p6', 'fcm', 'f6')) AS d(member, platform, token)
  ON d.member = m.external_id;
CREATE FUNCTION pg_temp.enqueue(member text, key text, due interval DEFAULT '-1 second',
                                data jsonb DEFAULT '{}', not_after timestamptz DEFAULT NULL,
                                budgeted boolean DEFAULT false) RETURNS bigint
    LANGUAGE sql AS $$
    INSERT INTO membership.notifications (organisation_id, member_id, channel, priority, category, title, body,
                                          data, sender, status, due_at, not_after, idempotency_key, budgeted, slot_at)
    SELECT m.organisation_id, m.id, 'push', CASE WHEN key = 'urgent' THEN 1 ELSE 2 END, 'news', 'Title "' || key || '"',
           'Body', data, 'organisation', 'queued', now() + due, not_after, key, budgeted,
           CASE WHEN budgeted THEN now() END
    FROM membership.members m WHERE m.external_id = member AND m.organisation_id = fixture.org('push-a')
    RETURNING id
$$;
CREATE FUNCTION pg_temp.n(key text) RETURNS text LANGUAGE sql AS $$
    -- the payload's size depends on the row's id, so on the suites run before
    SELECT concat_ws(' ', status, reason, attempts, budgeted, lease_until IS NOT NULL,
                     regexp_replace(last_error, '^payload too large: 4\d{3} bytes', 'payload too large: 4,1xx bytes'))
    FROM membership.notifications WHERE idempotency_key = key
$$;

SELECT pg_temp.enqueue('p1', 'two-devices', data => '{"deep_link": "app://x", "n": 7, "aps": "ignored"}') IS NOT NULL,
       pg_temp.enqueue('p2', 'urgent', not_after => '2030-01-01 00:00:00+00') IS NOT NULL,
       pg_temp.enqueue('p3', 'no-device', budgeted => true) IS NOT NULL,
       pg_temp.enqueue('p4', 'late', not_after => now() - interval '1 second', budgeted => true) IS NOT NULL,
       pg_temp.enqueue('p5', 'too-big', data => jsonb_build_object('blob', repeat('x', 4100))) IS NOT NULL,
       pg_temp.enqueue('p6', 'later', due => '1 hour') IS NOT NULL;
INSERT INTO membership.notifications (organisation_id, member_id, channel, priority, category, title, body,
                                      sender, status, due_at, idempotency_key)
SELECT organisation_id, id, 'email', 2, 'news', 'T', 'B', 'organisation', 'queued', now() - interval '1 second', 'email'
FROM membership.members WHERE external_id = 'p4' AND organisation_id = :'org';

-- The worker's view of the queue: due now.
SELECT membership.push_next_wake() <= now() AS due_now;

-- One line per device to send to; rows that cannot be sent are settled.
SELECT n.idempotency_key, c.platform, c.token, c.priority, c.expiration, c.collapse_id = 'membership-' || n.id AS collapse_id,
       c.organisation_id = :'org' AS org
FROM membership.push_claim(100, 60, 5) AS c JOIN membership.notifications n ON n.id = c.notification_id
ORDER BY 1, 2;
SELECT idempotency_key, pg_temp.n(idempotency_key) FROM membership.notifications
WHERE organisation_id = :'org' ORDER BY 1;

-- The payloads.
SELECT jsonb_pretty(membership.push_fcm_message(n, 'f1') #- '{message,data,membership_notification_id}') FROM membership.notifications n WHERE idempotency_key = 'two-devices';
SELECT jsonb_pretty(membership.push_apns_payload(n) - 'membership_notification_id')
FROM membership.notifications n WHERE idempotency_key = 'two-devices';
SELECT membership.push_fcm_message(n, 'f')->'message'->'android'->>'priority' AS urgent_priority,
       membership.push_fcm_message(n, 'f')->'message'->'android' ? 'ttl' AS has_ttl
FROM membership.notifications n WHERE idempotency_key = 'urgent';

-- Claimed rows are not claimed twice while their lease runs.
SELECT count(*) AS claimed_again FROM membership.push_claim(100, 60, 5);

-- Answers: for two-devices FCM delivered and APNs retry; urgent's device dead.
SELECT membership.push_record(array_agg(n.id), array_agg(d.id), array_agg(r.outcome), array_agg(r.error),
                              array_agg(r.delay), 5)
FROM (VALUES ('two-devices', 'f1', 'sent', NULL, 0), ('two-devices', 'a1', 'retry', 'APNs: HTTP 503', 60000),
             ('urgent', 'a2', 'dead', 'APNs: HTTP 410 Unregistered', 0)) AS r(key, token, outcome, error, delay)
JOIN membership.notifications n ON n.idempotency_key = r.key
JOIN membership.devices d ON d.token = r.token;
SELECT idempotency_key, pg_temp.n(idempotency_key),
       CASE WHEN status = 'queued' THEN due_at BETWEEN now() + interval '59 seconds' AND now() + interval '61 seconds' END AS due_in_a_minute
FROM membership.notifications WHERE idempotency_key IN ('two-devices', 'urgent') ORDER BY 1;
SELECT d.token, d.active, d.deactivation_reason FROM membership.devices d WHERE d.organisation_id = :'org' ORDER BY 1;
SELECT n.idempotency_key, d.token, pd.status, pd.attempts, pd.last_error
FROM membership.push_deliveries pd JOIN membership.notifications n ON n.id = pd.notification_id
JOIN membership.devices d ON d.id = pd.device_id ORDER BY 1, 2;

-- The retry goes only to the device that has not got it; after the last
-- attempt the row fails.
UPDATE membership.notifications SET due_at = now() - interval '1 second' WHERE idempotency_key = 'two-devices';
SELECT c.token FROM membership.push_claim(100, 60, 2) AS c;
SELECT membership.push_record(ARRAY[n.id], ARRAY[d.id], '{retry}', '{"APNs: HTTP 503"}', '{1000}', 2)
FROM membership.notifications n, membership.devices d WHERE n.idempotency_key = 'two-devices' AND d.token = 'a1';
SELECT pg_temp.n('two-devices');

-- A lease that ran out is claimed again; one that ran out on the last attempt fails.
SELECT pg_temp.enqueue('p6', 'crashed') IS NOT NULL;
SELECT count(*) FROM membership.push_claim(100, 60, 2);
UPDATE membership.notifications SET lease_until = now() - interval '1 second' WHERE idempotency_key = 'crashed';
SELECT c.token FROM membership.push_claim(100, 60, 2) AS c;
SELECT pg_temp.n('crashed');
UPDATE membership.notifications SET lease_until = now() - interval '1 second' WHERE idempotency_key = 'crashed';
SELECT count(*) FROM membership.push_claim(100, 60, 2);
SELECT pg_temp.n('crashed');

-- The email row was never touched; the row due in an hour waits, and is the next wake-up.
SELECT idempotency_key, status, attempts FROM membership.notifications WHERE idempotency_key IN ('email', 'later') ORDER BY 1;
SELECT membership.push_next_wake() = (SELECT due_at FROM membership.notifications WHERE idempotency_key = 'later') AS next_is_later;

-- Monitoring needs the preloaded library; here it just lists no worker of this database.
SELECT count(*) FROM membership.push_worker_plans() WHERE database = (SELECT oid FROM pg_database WHERE datname = current_database());
