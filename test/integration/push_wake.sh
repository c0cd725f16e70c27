#!/usr/bin/env bash
# The push worker sleeps while nothing is due, until the earliest due_at,
# and is woken at commit by a row that becomes due before that: a row due
# now is sent at once although the worker planned to sleep for a minute; a
# row deferred to t is sent at t, not before; a row due in an hour wakes
# nobody.
. "$(dirname "$0")/tap.bash"
. "$(dirname "$0")/push_lib.bash"
plan 9

org=$(push_org wake-a)
m1=$(push_member "$org" m1)
push_device "$org" "$m1" fcm ok-w1 >/dev/null
n=$(push_enqueue "$org" "$m1")
wait_status 10 "$n" sent
planned() { q -d membership -c "SELECT coalesce(extract(epoch FROM planned_wake - now())::int::text, 'awake')
                                FROM membership.push_worker_plans() WHERE database = (SELECT oid FROM pg_database WHERE datname = 'membership')"; }
wait_for 5 "SELECT planned_wake > now() + interval '50 seconds' FROM membership.push_worker_plans()"

is "$(q -d membership -c "SELECT count(*) FROM membership.push_worker_plans()")" 1 "one push worker runs (membership.push_workers = 1)"
like "$(planned)" '^(5[0-9]|60)$' "with nothing due, it plans to look again in a minute (its safety net), not every second"
is "$(q -d membership -c "SELECT wait_event FROM pg_stat_activity WHERE backend_type = 'membership push worker'")" Extension \
	"and sleeps on its latch"

# due now: woken at commit
n=$(push_enqueue "$org" "$m1")
wait_status 5 "$n" sent
is "$(status "$n")" "sent 1" "a row due now is sent within moments: the commit woke the sleeping worker"

# due in an hour: nobody is woken, the plan stays
before=$(planned)
far=$(push_enqueue "$org" "$m1" "now() + interval '1 hour'")
sleep 1
like "$(planned)" '^[0-9]+$' "a row due in an hour does not wake the worker"
ok_far=$(( $(planned) <= before ))
is "$ok_far" 1 "it keeps its earlier plan"

# deferred to t: sent at t
at=$(push_enqueue "$org" "$m1" "now() + interval '3 seconds'")
wait_for 2 "SELECT planned_wake = (SELECT due_at FROM membership.notifications WHERE id = $at) FROM membership.push_worker_plans()"
is "$(q -d membership -c "SELECT planned_wake = (SELECT due_at FROM membership.notifications WHERE id = $at) FROM membership.push_worker_plans()")" \
	t "a row deferred to t: the worker plans to wake exactly at t"
wait_status 10 "$at" sent
is "$(q -d membership -c "SELECT sent_at >= due_at AND sent_at < due_at + interval '5 seconds' FROM membership.notifications WHERE id = $at")" \
	t "and sends it at t, not before (not a minute later)"
is "$(status "$far")" "queued 0" "the row due in an hour still waits"
q -d membership -c "DELETE FROM membership.notifications WHERE id = $far" >/dev/null
finish
