-- Loyalty notices reach the notification outbox (390_loyalty_notices.sql):
-- the ledger records them with the change they tell of, the job
-- send_loyalty_notices enqueues each once.
SELECT fixture.new_org('ln-a') IS NOT NULL AS a;
SELECT fixture.org('ln-a') AS org \gset
SELECT membership_api.sync_members('[{"external_id": "up"}, {"external_id": "exp"}]', 'delta',
                                   fixture.key('ln-a:org')) IS NOT NULL AS synced;
SELECT membership.find_member(:'org', 'up') AS up, membership.find_member(:'org', 'exp') AS exp \gset

-- (notices of the suites run before are handed over first)
SELECT membership.send_loyalty_notices() >= 0 AS earlier_ones_sent;

-- "up" crosses the Silver threshold; "exp" has points that expire in 20 days.
SELECT membership.earn_points(:'org', :'up', 600000, 'order', 'ln-1') AS upgraded;
SELECT membership.earn_points(:'org', :'exp', 1000, 'order', 'ln-2', NULL,
                              now() - interval '12 months' + interval '20 days') AS expiring;
SELECT membership.expire_points(current_date) IS NOT NULL AS expiry_ran;
SELECT m.external_id, n.kind, n.notification_id IS NULL AS pending
FROM membership.loyalty_notices n JOIN membership.members m ON m.id = n.member_id
WHERE n.organisation_id = :'org' ORDER BY 1, 2;

-- The job hands both over, once.
SELECT membership.send_loyalty_notices() AS sent;
SELECT m.external_id, o.channel, o.priority, o.category, o.status, o.reason, o.sender,
       o.not_after = (n.data ->> 'expires_on')::date::timestamptz AS not_after_is_expiry,
       o.data ->> 'kind' AS kind, o.idempotency_key = 'loyalty:' || n.id AS keyed_by_notice
FROM membership.loyalty_notices n
JOIN membership.notifications o ON o.id = n.notification_id
JOIN membership.members m ON m.id = n.member_id
WHERE n.organisation_id = :'org' ORDER BY 1;
SELECT membership.send_loyalty_notices() AS sent_again;
SELECT count(*) AS loyalty_notifications FROM membership.notifications
WHERE organisation_id = :'org' AND category = 'loyalty';

-- A cap on how many one run hands over: two new upgrades, one at a time.
SELECT membership.earn_points(:'org', :'exp', 1500000, 'order', 'ln-3') AS upgraded_too,
       membership.earn_points(:'org', :'up', 1000000, 'order', 'ln-4') AS upgraded_again;
SELECT count(*) AS pending FROM membership.loyalty_notices WHERE organisation_id = :'org' AND notification_id IS NULL;
SELECT membership.send_loyalty_notices(1) AS capped, membership.send_loyalty_notices() AS the_rest;
-- Two notices of one member waiting at once (Silver, then Gold): one
-- notification each, planned one after the other.
SELECT membership_api.sync_members('[{"external_id": "twice"}]', 'delta', fixture.key('ln-a:org')) IS NOT NULL AS synced;
SELECT membership.earn_points(:'org', membership.find_member(:'org', 'twice'), 600000, 'order', 'ln-5') AS silver,
       membership.earn_points(:'org', membership.find_member(:'org', 'twice'), 1000000, 'order', 'ln-6') AS gold;
SELECT membership.send_loyalty_notices() AS sent_for_twice;
SELECT n.data ->> 'tier' AS tier, o.title, o.status, o.reason
FROM membership.loyalty_notices n JOIN membership.notifications o ON o.id = n.notification_id
WHERE n.member_id = membership.find_member(:'org', 'twice') ORDER BY n.id;

SELECT fixture.try('SELECT membership.send_loyalty_notices(0)');
SELECT fixture.try('SELECT membership.send_loyalty_notices(NULL)');
