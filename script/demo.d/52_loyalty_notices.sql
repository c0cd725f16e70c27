-- Loyalty notices reach the outbox: the day's batch upgraded members to
-- Silver, and each upgrade notice becomes a push notification (priority 1,
-- category "loyalty") when the job send_loyalty_notices runs.
\echo
\echo '== Loyalty notices through the outbox =='
\echo 'Notices the ledger recorded, not yet handed over:'
SELECT kind, count(*) AS notices FROM membership.loyalty_notices WHERE notification_id IS NULL GROUP BY kind ORDER BY kind;
\echo 'The job send_loyalty_notices (every minute under pg_cron, 10,000 a run by default; here all at once)'
\echo 'enqueues them under the notification rules, set-based:'
\timing on
SELECT membership.send_loyalty_notices(50000) AS handed_over;
\timing off
SELECT n.priority, n.status, n.reason, count(*) AS notifications
FROM membership.loyalty_notices l JOIN membership.notifications n ON n.id = l.notification_id
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
\echo 'A second run finds nothing new:'
SELECT membership.send_loyalty_notices() AS handed_over_again;
