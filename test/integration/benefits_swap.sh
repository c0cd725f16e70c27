#!/usr/bin/env bash
# The nightly feed pass seen from other sessions while it runs: readers see
# the previous night's feeds, never a mix, until it commits; its progress
# and its 'running' record are visible at once; a second run is refused; a
# refresh made meanwhile is not lost; and a run whose backend dies is
# recorded as interrupted.
#
# The pass is held in the middle of its work deterministically: another
# session holds a row lock on one feed of the organisation the pass writes
# last, so the pass has written (but not committed) every other
# organisation's feeds when it stops there.
. "$(dirname "$0")/tap.bash"
plan 21

db=benefits_swap
fresh_db $db
q -d $db >/dev/null <<'SQL'
SELECT fixture.new_org('swap-' || i) FROM generate_series(1, 3) AS i;
SELECT membership.set_benefit_category('swap', 'Swap');
SELECT membership.offer_benefit(o.id, membership.create_benefit(o.slug || '-bank', 'swap', 'Offer ' || o.slug || ' ' || i,
                                                                i / 20.0, added_on => current_date - 30))
FROM membership.organisations o, generate_series(1, 12) AS i;
SELECT membership_api.sync_members(
    (SELECT jsonb_agg(jsonb_build_object('external_id', 'm' || i, 'email', 'm' || i || '@' || o.slug || '.example'))
     FROM generate_series(1, 200) AS i), 'full', fixture.key(o.slug || ':org'))
FROM membership.organisations o;
SELECT membership.score_feeds();
SQL

# Every stored feed as one checksum, and how many there are.
feeds_state() {
	q -d $db -c "SELECT count(*) || ' ' || md5(string_agg(member_id::text || benefit_ids::text || scores::text, ','
	                                             ORDER BY member_id)) FROM membership.feeds"
}
# The pid of the session running the pass, once it waits for a lock.
waiting_pass() {
	q -d $db -c "SELECT pid FROM pg_stat_activity WHERE datname = '$db' AND wait_event_type = 'Lock'
	             AND query LIKE '%run_job%' LIMIT 1"
}
wait_for() {
	local i
	for i in $(seq 1 300); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}
pass_is_waiting() { [ -n "$(waiting_pass)" ]; }

# A session of its own that holds a row lock until told to let go.
coproc HOLDER { psql -X -q -At -d $db 2>&1; }
hold_last_organisation() {
	echo "BEGIN; SELECT 'held' FROM membership.feeds f
	      WHERE f.organisation_id = (SELECT max(id::text)::uuid FROM membership.organisations)
	        AND f.member_id = (SELECT min(member_id::text)::uuid FROM membership.feeds g
	                           WHERE g.organisation_id = f.organisation_id)
	      FOR UPDATE;" >&"${HOLDER[1]}"
	read -r held <&"${HOLDER[0]}"
	[ "$held" = held ] || diag "could not hold a feed: $held"
}
let_go() { echo "ROLLBACK;" >&"${HOLDER[1]}"; }

before=$(feeds_state)
total=${before%% *}
is "$total" "600" "the previous night stored 600 feeds"

# Tonight every feed changes: each organisation's least benefit becomes its best.
q -d $db -c "UPDATE membership.benefits SET base_score = 1
             WHERE id IN (SELECT min(benefit_id) FROM membership.benefit_offers GROUP BY organisation_id)" >/dev/null

hold_last_organisation
psql -X -q -d $db -c "CALL membership.run_job('score_feeds')" >"$MB_WORK/swap_pass.out" 2>&1 &
pass=$!
if wait_for pass_is_waiting; then
	pass "the pass runs and stops at the held feed"
else
	fail "the pass runs and stops at the held feed"
fi

is "$(feeds_state)" "$before" "while the pass is half-way, a reader sees every feed of the previous night"
member_a=$(q -d $db -c "SELECT fixture.claims('member', (SELECT slug FROM membership.organisations ORDER BY id LIMIT 1), 'm1')")
old_first=$(q -d $db -c "SELECT f.scores[1] FROM membership.feeds f JOIN membership.members m ON m.id = f.member_id
                         WHERE m.organisation_id = (SELECT min(id::text)::uuid FROM membership.organisations) AND m.external_id = 'm1'")
is "$(psql -X -q -At -U authenticator -d $db -c "SET ROLE membership_member" \
	-c "SELECT set_config('request.jwt.claims', '$member_a', false)" -c "SELECT score FROM membership_api.feed(1)" | tail -n 1)" \
	"$old_first" "... and a member of an organisation already rewritten still gets the old feed through the API"

progress=$(q -d $db -c "SELECT job || ' ' || phase || ' ' || (done > 0 AND done < total) || ' ' || total
                        FROM membership.job_progress()")
is "$progress" "score_feeds scoring true 600" "another session sees the pass's progress: part of the members done"
is "$(q -d $db -c "SELECT status || ' ' || (finished_at IS NULL) FROM membership.job_runs WHERE job = 'score_feeds'")" \
	"running true" "... and its run recorded as running"
is "$(q -d $db -c "SELECT last_status || ' ' || phase FROM membership.job_status() WHERE job = 'score_feeds'")" \
	"running scoring" "... and job_status() shows both"
like "$(psql -X -q -d $db -c "CALL membership.run_job('score_feeds')" 2>&1)" 'job "score_feeds" is already running' \
	"a second run of the same job is refused while the first runs"
like "$(q -d $db -c "SELECT membership.score_feeds()" 2>&1)" "feed scoring is already running" \
	"... and so is scoring outside the job runner"

# A member of the first organisation hides the category meanwhile: the
# refresh waits for the pass and wins over what the pass wrote.
psql -X -q -At -U authenticator -d $db -c "SET ROLE membership_member" \
	-c "SELECT set_config('request.jwt.claims', '$member_a', false)" \
	-c "SELECT membership_api.set_category_preference('swap', 'hidden')" >"$MB_WORK/swap_refresh.out" 2>&1 &
refresh=$!
# until the refresh, like the pass, waits for a lock
refresh_is_waiting() {
	[ "$(q -d $db -c "SELECT count(*) >= 2 FROM pg_stat_activity WHERE datname = '$db' AND wait_event_type = 'Lock'")" = t ]
}
wait_for refresh_is_waiting || diag "the refresh never waited for the pass"

let_go
wait $pass
is "$?" "0" "the pass finishes once the lock is gone"
wait $refresh
is "$?" "0" "the refresh finishes after the pass"
after=$(feeds_state)
isnt_state=$([ "$after" != "$before" ] && echo changed)
is "$isnt_state" "changed" "after the commit, readers see the new night"
is "$(q -d $db -c "SELECT count(*) FROM membership.feeds f JOIN membership.benefits b
                   ON b.id = f.benefit_ids[1] AND b.base_score = 1")" \
	"599" "... in every feed at once: all 599 feeds lead with tonight's best benefit"
is "$(q -d $db -c "SELECT count(*) FROM membership.feeds f JOIN membership.members m ON m.id = f.member_id
                   WHERE m.organisation_id = (SELECT min(id::text)::uuid FROM membership.organisations) AND m.external_id = 'm1'")" \
	"0" "... and the member who hid everything meanwhile has no feed: the refresh was not lost"
is "$(q -d $db -c "SELECT status || ' ' || rows FROM membership.job_runs WHERE job = 'score_feeds' ORDER BY id DESC LIMIT 1")" \
	"succeeded 600" "the run is recorded as succeeded, with the members it scored"
is "$(q -d $db -c "SELECT count(*) FROM membership.job_progress()")" "0" "no job is running any more"

# A run whose backend dies is recorded as interrupted.
q -d $db -c "UPDATE membership.benefits SET base_score = 0.01 WHERE base_score = 1" >/dev/null
hold_last_organisation
psql -X -q -d $db -c "CALL membership.run_job('score_feeds')" >"$MB_WORK/swap_killed.out" 2>&1 &
killed=$!
wait_for pass_is_waiting
q -d $db -c "SELECT pg_terminate_backend($(waiting_pass))" >/dev/null
wait $killed
let_go
is "$(q -d $db -c "SELECT status FROM membership.job_runs WHERE job = 'score_feeds' ORDER BY id DESC LIMIT 1")" \
	"running" "a run whose backend was terminated is left as running in job_runs"
is "$(q -d $db -c "SELECT last_status FROM membership.job_status() WHERE job = 'score_feeds'")" "interrupted" \
	"... but job_status() shows it interrupted: no process runs it"
is "$(feeds_state)" "$after" "... and none of its work was kept"
psql -X -q -d $db -c "CALL membership.run_job('score_feeds')" >/dev/null 2>&1
is "$(q -d $db -c "SELECT string_agg(status, ' ' ORDER BY id) FROM membership.job_runs WHERE job = 'score_feeds'")" \
	"succeeded interrupted succeeded" "the next run records it as interrupted and succeeds"
like "$(q -d $db -c "SELECT error FROM membership.job_runs WHERE status = 'interrupted'")" "ended without finishing" \
	"... with why"

# bash forgets a coprocess (and its _PID) once it has ended and been reaped
if [ -n "${HOLDER_PID:-}" ]; then
	echo "\\q" >&"${HOLDER[1]}"
	wait "$HOLDER_PID" 2>/dev/null || true
fi
psql -X -q -d postgres -c "DROP DATABASE $db WITH (FORCE)" >/dev/null
finish
