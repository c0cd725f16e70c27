# shellcheck shell=bash
# Push dispatch through ONE push worker to the local HTTP/2 mock servers
# (test/mock/push_mock.js, TLS, h2): 20,000 notifications to members of the
# largest organisation, half to FCM tokens, half to APNs tokens, made due
# at the same instant; the figure is notifications recorded 'sent' per
# second from that instant to the last sent_at, checked against the mocks'
# own count of deliveries.  Beside it, the same worker with
# membership.push_concurrency = 1 (one stream at a time: no multiplexing)
# on 2,000 notifications.  Target: >= 2,000 notifications/s.  Sourced by
# script/bench.
push_bench_count=20000
push_bench_reference_count=2000
push_bench_org=$(psql -X -At -c "SELECT o.slug FROM membership.organisations o JOIN membership.members m ON m.organisation_id = o.id
                                 GROUP BY o.slug ORDER BY count(*) DESC LIMIT 1")
push_bench_members=$(psql -X -At -c "SELECT count(*) FROM membership.members m JOIN membership.organisations o
                                     ON o.id = m.organisation_id WHERE o.slug = '$push_bench_org'")

psql -X -q -v ON_ERROR_STOP=1 -v fcm_key="$(cat "$MB_PUSH_DIR/fcm_sa.key")" -v apns_key="$(cat "$MB_PUSH_DIR/apns.p8")" \
	-v token_uri="$MB_PUSH_URL/token" -v slug="$push_bench_org" <<'SQL'
INSERT INTO membership.push_credentials (organisation_id, fcm_project_id, fcm_client_email, fcm_private_key,
    fcm_token_uri, apns_key_id, apns_team_id, apns_private_key, apns_topic)
SELECT id, 'membership-test', 'push-worker@membership-test.iam.gserviceaccount.com', :'fcm_key',
       :'token_uri', 'MOCKKEY001', 'MOCKTEAM01', :'apns_key', 'app.membership.test'
FROM membership.organisations WHERE slug = :'slug'
ON CONFLICT (organisation_id) DO NOTHING;
INSERT INTO membership.devices (organisation_id, member_id, platform, token)
SELECT m.organisation_id, m.id, CASE WHEN row_number() OVER (ORDER BY m.id) % 2 = 0 THEN 'fcm' ELSE 'apns' END,
       'ok-bench-' || m.id
FROM membership.members m JOIN membership.organisations o ON o.id = m.organisation_id
WHERE o.slug = :'slug' AND NOT EXISTS (SELECT FROM membership.devices d WHERE d.member_id = m.id);
SQL

# push_bench_run COUNT ROUND: COUNT notifications, round-robin over the
# organisation's members, made due at the same instant; prints "rate
# seconds sent delivered" once every one is settled.
push_bench_run() {
	local count=$1 round=$2 before rate
	curl -s -X POST "$MB_PUSH_CONTROL/reset" >/dev/null
	# made first, waiting for approval (due_at NULL), then all made due at once
	psql -X -q -v ON_ERROR_STOP=1 <<SQL
INSERT INTO membership.notifications (organisation_id, member_id, channel, priority, category, title, body,
                                      sender, status, due_at, idempotency_key)
SELECT m.organisation_id, m.id, 'push', 2, 'news', 'Benchmark', 'Notification ' || i, 'organisation', 'deferred',
       NULL, 'bench-$round-' || i
FROM generate_series(0, $count - 1) AS i
JOIN (SELECT m.organisation_id, m.id, row_number() OVER (ORDER BY m.id) - 1 AS k
      FROM membership.members m JOIN membership.organisations o ON o.id = m.organisation_id
      WHERE o.slug = '$push_bench_org') m ON m.k = i % $push_bench_members;
-- the statistics autovacuum would have gathered by now on a live system
ANALYZE membership.devices, membership.notifications, membership.push_deliveries;
UPDATE membership.notifications SET status = 'queued', due_at = now() WHERE idempotency_key LIKE 'bench-$round-%';
SQL
	while [ "$(psql -X -At -c "SELECT count(*) FROM membership.notifications
	                           WHERE idempotency_key LIKE 'bench-$round-%' AND status IN ('queued', 'sending')")" != 0 ]; do
		sleep 0.5
	done
	psql -X -At -F ' ' -c "SELECT round($count / extract(epoch FROM max(sent_at) - min(due_at))),
	                              round(extract(epoch FROM max(sent_at) - min(due_at))::numeric, 2),
	                              count(*) FILTER (WHERE status = 'sent')
	                       FROM membership.notifications WHERE idempotency_key LIKE 'bench-$round-%'" | tr '\n' ' '
	echo "SELECT (:'j'::jsonb) ->> 'delivered'" | psql -X -At -v j="$(curl -s "$MB_PUSH_CONTROL/totals")"
}

read -r rate secs sent delivered < <(push_bench_run $push_bench_count main)
psql -X -q -c "ALTER SYSTEM SET membership.push_concurrency = 1" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1
read -r ref_rate ref_secs ref_sent ref_delivered < <(push_bench_run $push_bench_reference_count reference)
psql -X -q -c "ALTER SYSTEM RESET membership.push_concurrency" -c "SELECT pg_reload_conf()" >/dev/null

cat <<MD
## Push dispatch

One push worker (\`membership.push_workers = 1\`, batches of $(psql -X -At -c 'SHOW membership.push_batch_size'),
$(psql -X -At -c 'SHOW membership.push_concurrency') streams in flight) delivering to the local mock FCM and APNs servers
(\`test/mock/push_mock.js\`: Node.js, TLS, HTTP/2, checking every request's JWT and headers) on the same
2 cores; notifications to members of the largest organisation, half to FCM tokens, half to APNs tokens,
all due at the same instant. Rate = notifications / (last \`sent_at\` - \`due_at\`), each claimed,
sent and recorded. Target: >= 2,000 notifications/s.

| what | notifications | sent | mocks' own count | seconds | notifications/s |
|---|---|---|---|---|---|
| **one worker, HTTP/2 multiplexed** | $push_bench_count | $sent | $delivered | $secs | **$rate/s** |
| reference: the same worker, one stream at a time (\`push_concurrency = 1\`) | $push_bench_reference_count | $ref_sent | $ref_delivered | $ref_secs | $ref_rate/s |

Multiplexing vs one stream at a time: $(mb_ratio "$rate" "$ref_rate")x.

MD
