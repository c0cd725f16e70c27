#!/usr/bin/env bash
# Crashes with notifications in flight lose nothing: a push worker killed
# with SIGKILL mid-batch, and the postmaster killed with SIGKILL while the
# worker waits for answers.  Each time the rows stay 'sending' until their
# lease runs out, a worker claims them again, and every one ends 'sent',
# the mock having received each at least once; no row is left 'sending'.
. "$(dirname "$0")/tap.bash"
. "$(dirname "$0")/push_lib.bash"
plan 10

q -d membership -c "ALTER SYSTEM SET membership.push_lease = '5s'" \
	-c "ALTER SYSTEM SET membership.push_timeout_ms = '4s'" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
org=$(push_org crash-a)
worker_pid() { q -d membership -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'membership push worker'"; }

# ROUND COUNT: COUNT members, each with a device whose first request gets
# no answer, and a notification to each; prints nothing.
enqueue_stalled() {
	q -d membership -c "WITH m AS (
	        INSERT INTO membership.members (organisation_id, external_id, email)
	        SELECT '$org', '$1-' || i, '$1-' || i || '@crash.example' FROM generate_series(1, $2) AS i RETURNING id, external_id),
	    d AS (INSERT INTO membership.devices (organisation_id, member_id, platform, token)
	          SELECT '$org', id, CASE WHEN external_id ~ '[02468]\$' THEN 'fcm' ELSE 'apns' END, 'stall1-' || external_id FROM m)
	    INSERT INTO membership.notifications (organisation_id, member_id, channel, priority, category, title, body,
	                                          sender, status, due_at)
	    SELECT '$org', id, 'push', 2, 'news', 'Crash', 'In flight', 'organisation', 'queued', now() FROM m" >/dev/null
}
round_rows() { echo "(SELECT n.id FROM membership.notifications n JOIN membership.members m ON m.id = n.member_id WHERE m.external_id LIKE '$1-%')"; }

# 1: the worker killed mid-batch
enqueue_stalled k 60
wait_for 10 "SELECT count(*) = 60 FROM membership.notifications WHERE status = 'sending' AND id IN $(round_rows k)"
in_flight() { echo $(( $(mock_counts fcm_requests) + $(mock_counts apns_requests) )); }
for i in $(seq 1 50); do [ "$(in_flight)" -ge 60 ] && break; sleep 0.2; done
is "$(in_flight)" 60 "sixty requests are in flight, unanswered"
pid=$(worker_pid)
kill -9 "$pid"
wait_for 30 "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'membership push worker' AND pid <> $pid"
like "$(worker_pid)" '^[0-9]+$' "a push worker killed with SIGKILL is back by itself"
wait_for 30 "SELECT count(*) = 60 FROM membership.notifications WHERE status = 'sent' AND id IN $(round_rows k)"
is "$(q -d membership -c "SELECT count(*) || ' ' || min(attempts) || ' ' || max(attempts) FROM membership.notifications
                          WHERE status = 'sent' AND id IN $(round_rows k)")" "60 2 2" \
	"after the lease every row is claimed again and sent (second attempt)"
is "$(echo "SELECT count(*) FROM jsonb_each(:'j'::jsonb -> 'tokens') t WHERE t.key LIKE 'stall1-k-%' AND (t.value ->> 'delivered')::int >= 1" |
	q -d membership -v j="$(mock_counts)")" 60 "the mock got every one of them at least once"
is "$(q -d membership -c "SELECT count(*) FROM membership.notifications WHERE status = 'sending'")" 0 "no row is left sending"

# 2: the postmaster killed with rows in flight
mock_control reset
enqueue_stalled p 40
wait_for 10 "SELECT count(*) = 40 FROM membership.notifications WHERE status = 'sending' AND id IN $(round_rows p)"
for i in $(seq 1 50); do [ "$(in_flight)" -ge 40 ] && break; sleep 0.2; done
pids=$(q -d membership -c "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()")
postmaster=$(mb_cluster_pid main)
kill -9 "$postmaster"
for i in $(seq 1 100); do
	alive=0
	for p in $postmaster $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
	[ $alive -eq 0 ] && break
	sleep 0.2
done
is "$alive" 0 "the postmaster killed with SIGKILL, its children (the push worker among them) are gone"
# the postmaster is gone for sure: its pid file is stale
as_postgres rm -f "$MB_WORK/main/data/postmaster.pid"
mb_cluster_start main
is "$(q -d membership -c "SELECT count(*) FROM membership.notifications WHERE status = 'sending' AND id IN $(round_rows p)")" 40 \
	"after the restart the forty rows are still claimed ('sending'): nothing was lost"
wait_for 30 "SELECT count(*) = 40 FROM membership.notifications WHERE status = 'sent' AND id IN $(round_rows p)"
is "$(q -d membership -c "SELECT count(*) FROM membership.notifications WHERE status = 'sent' AND id IN $(round_rows p)")" 40 \
	"once their lease has run out the restarted worker sends every one"
is "$(echo "SELECT count(*) FROM jsonb_each(:'j'::jsonb -> 'tokens') t WHERE t.key LIKE 'stall1-p-%' AND (t.value ->> 'delivered')::int >= 1" |
	q -d membership -v j="$(mock_counts)")" 40 "the mock got every one of them at least once"
is "$(q -d membership -c "SELECT count(*) FROM membership.notifications WHERE status = 'sending'")" 0 "no row is left sending"

q -d membership -c "ALTER SYSTEM RESET membership.push_lease" -c "ALTER SYSTEM RESET membership.push_timeout_ms" \
	-c "SELECT pg_reload_conf()" >/dev/null
finish
