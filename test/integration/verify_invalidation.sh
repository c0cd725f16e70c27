#!/usr/bin/env bash
# Changes made in one session take effect in every already-connected
# backend before its next call: key revocation, rotation's end of overlap,
# plan changes, and member changes (the cached answers).
. "$(dirname "$0")/tap.bash"
plan 7

worker_db
q -d membership >/dev/null <<'SQL'
SELECT fixture.new_org('inv-a');
SELECT membership.set_plan('two_a_minute', 2);
INSERT INTO fixture.keys VALUES ('inv-a:two', membership.issue_api_key(fixture.org('inv-a'), 'inv-a-bank', 'two_a_minute'));
SELECT membership_api.sync_members('[{"external_id": "i1", "email": "i1@inv.example"}]', 'delta', fixture.key('inv-a:org'));
SQL
# Start well inside a minute, so the plan test stays in one.
sec=$(date -u +%S); sec=${sec#0}
[ "$sec" -gt 45 ] && sleep $((62 - sec))

# One long-lived session (like a pooled connection) asks; other sessions
# change things between its calls (psql's \! runs them).
out=$(q -d membership -v VERBOSITY=terse 2>&1 <<'SQL'
\set ON_ERROR_STOP 0
SELECT membership_api.verify_member('i1@inv.example', NULL, fixture.key('inv-a:provider'))->>'verified';
\! psql -X -q -d membership -c "SELECT membership_api.sync_members('[{\"external_id\": \"i1\", \"status\": \"lapsed\"}]', 'delta', fixture.key('inv-a:org'))" >/dev/null
SELECT membership_api.verify_member('i1@inv.example', NULL, fixture.key('inv-a:provider'))->>'verified';
\! psql -X -q -d membership -c "SELECT membership.revoke_api_key(fixture.key('inv-a:provider'))" >/dev/null
SELECT membership_api.verify_member('i1@inv.example', NULL, fixture.key('inv-a:provider'));
SELECT membership_api.verify_member('i1@inv.example', NULL, fixture.key('inv-a:two'))->>'verified';
SELECT membership_api.verify_member('i1@inv.example', NULL, fixture.key('inv-a:two'))->>'verified';
SELECT membership_api.verify_member('i1@inv.example', NULL, fixture.key('inv-a:two'));
\! psql -X -q -d membership -c "SELECT membership.set_plan('two_a_minute', 100)" >/dev/null
SELECT membership_api.verify_member('i1@inv.example', NULL, fixture.key('inv-a:two'))->>'verified';
\! psql -X -q -d membership -c "SELECT membership_api.sync_members('[{\"external_id\": \"i1\", \"status\": \"active\"}]', 'delta', fixture.key('inv-a:org'))" >/dev/null
SELECT membership_api.verify_member('i1@inv.example', NULL, fixture.key('inv-a:two'))->>'verified';
\! psql -X -q -d membership -c "UPDATE membership.api_keys SET expires_at = now() WHERE prefix = left(fixture.key('inv-a:two'), 11)" >/dev/null
SELECT membership_api.verify_member('i1@inv.example', NULL, fixture.key('inv-a:two'));
SQL
)
mapfile -t lines <<<"$out"
is "${lines[0]}" "true" "the session verifies an active member"
is "${lines[1]}" "false" "after another session lapses the member, its next answer is false"
like "${lines[2]}" 'has been revoked' "after another session revokes the key, its next call is refused"
is "${lines[3]},${lines[4]}" "false,false" "a two-a-minute key answers twice"
like "${lines[5]}" 'rate limit of 2 calls per minute exceeded' "... and is refused the third time"
is "${lines[6]},${lines[7]}" "false,true" "after another session raises the plan, the next call is allowed (and sees the reactivation)"
like "${lines[8]}" 'has expired' "after another session ends the key's overlap, its next call is refused"
finish
