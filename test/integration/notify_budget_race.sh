#!/usr/bin/env bash
# The push budget holds under concurrency: twelve sessions enqueue to the
# same member at once (single sends of priority 2 and 3, and audience sends
# that include the member), all on one clock "at".  Exactly 3 budgeted
# deliveries land in the first 7 days, every later slot sits exactly a week
# after one that frees, no 7-day window ever holds more than 3, and every
# priority 3 send beyond the budget is dropped.
. "$(dirname "$0")/tap.bash"
plan 7

# Its own database: the push worker (membership.database) must not deliver
# or drop these rows while the test counts them.
db=notify_race
fresh_db $db
q -d $db >/dev/null <<'SQL'
SELECT fixture.new_org('race-a');
SELECT membership_api.sync_members('[{"external_id": "r1", "email": "r1@race.example"},
                                     {"external_id": "r2", "email": "r2@race.example"}]',
                                   'delta', fixture.key('race-a:org'));
-- r1 allows marketing, so its priority 3 sends compete for slots too
INSERT INTO membership.consents (organisation_id, member_id, consent, granted)
SELECT organisation_id, id, 'marketing', true FROM membership.members WHERE external_id = 'r1';
SQL
org=$(q -d $db -c "SELECT fixture.org('race-a')")
member=$(q -d $db -c "SELECT membership.find_member('$org', 'r1')")
at='2030-01-07 12:00:00+00'

# All sessions start at the same moment and send 6 times each, every send
# its own transaction.
start=$(q -d $db -c "SELECT clock_timestamp() + interval '2 seconds'")
for s in $(seq 1 12); do
	q -d $db >"$MB_WORK/race.$s" 2>&1 <<SQL &
SELECT pg_sleep_until('$start');
SELECT status FROM membership.enqueue_notification('$org', '$member', 'push', 2 + ($s + 0) % 2, 'news', 's$s', 'one');
SELECT status FROM membership.enqueue_notification('$org', '$member', 'push', 2 + ($s + 1) % 2, 'news', 's$s', 'two',
                                                   at => '$at');
SELECT membership.enqueue_notification_audience('$org', '{"all": true}', 'push', 2 + $s % 2, 'news', 's$s', 'all',
                                                at => '$at') IS NOT NULL;
SELECT status FROM membership.enqueue_notification('$org', '$member', 'push', 2, 'news', 's$s', 'three', at => '$at');
SELECT status FROM membership.enqueue_notification('$org', '$member', 'push', 3, 'news', 's$s', 'four', at => '$at');
SELECT membership.enqueue_notification_audience('$org', '{"all": true}', 'push', 2, 'news', 's$s', 'all again',
                                                at => '$at') IS NOT NULL;
SQL
done
wait
errors=$(cat "$MB_WORK"/race.* | grep -c -E 'ERROR|FATAL')
is "$errors" 0 "twelve concurrent sessions enqueued without an error (deadlock or otherwise)"

# The first send of each session used the real clock; the rest used "at".
rows="membership.notifications WHERE member_id = '$member' AND body <> 'one'"
is "$(q -d $db -c "SELECT count(*) FROM $rows")" 60 "60 notifications to the member on the clock \"at\""
is "$(q -d $db -c "SELECT count(*) FROM $rows AND budgeted AND slot_at >= '$at' AND slot_at < timestamptz '$at' + interval '7 days'")" 3 \
	"exactly 3 budgeted deliveries in the first 7 days"
is "$(q -d $db -c "SELECT count(*) FROM $rows AND budgeted
                   AND (extract(epoch FROM slot_at - '$at') / 604800)::numeric % 1 <> 0")" 0 \
	"every later slot is exactly a whole number of weeks after \"at\": the moment a slot frees"
is "$(q -d $db -c "SELECT coalesce(max(n), 0) FROM (
                       SELECT count(o.*) AS n FROM membership.notifications s
                       JOIN membership.notifications o ON o.member_id = s.member_id AND o.channel = s.channel AND o.budgeted
                        AND o.slot_at >= s.slot_at AND o.slot_at < s.slot_at + interval '7 days'
                       WHERE s.member_id = '$member' AND s.budgeted GROUP BY s.id) w")" 3 \
	"no 7-day window, starting at any slot, holds more than 3 budgeted rows"
is "$(q -d $db -c "SELECT count(*) FROM $rows AND priority = 3 AND status <> 'dropped' AND slot_at > '$at'")" 0 \
	"no priority 3 send was deferred: those without a free slot were dropped"
is "$(q -d $db -c "SELECT count(*) FROM $rows AND priority = 2 AND status <> 'deferred' AND slot_at > '$at'")" 0 \
	"every priority 2 send without a slot now was deferred to a later one"

psql -X -q -d postgres -c "DROP DATABASE $db" >/dev/null
finish
