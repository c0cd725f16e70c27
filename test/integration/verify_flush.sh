#!/usr/bin/env bash
# The usage flusher: counters reach membership.usage_minutes within a few
# seconds; a flusher killed with SIGKILL comes back by itself and no flushed
# minute is lost; a flusher stopped with SIGTERM flushes what it holds
# first; audit records hold hashes, never addresses.
. "$(dirname "$0")/tap.bash"
plan 9

worker_db
q -d membership >/dev/null <<'SQL'
SELECT fixture.new_org('flu-a');
SELECT membership_api.sync_members('[{"external_id": "f1", "email": "f1@flu.example"}]', 'delta', fixture.key('flu-a:org'));
SELECT membership.set_plan('free', 100000);
SQL
key=$(q -d membership -c "SELECT fixture.key('flu-a:provider')")
key_id=$(q -d membership -c "SELECT id FROM membership.api_keys WHERE prefix = left('$key', 11)")
calls() {
	q -d membership -c "SELECT count(membership_api.verify_member(CASE WHEN i % 2 = 0 THEN 'f1@flu.example'
	                                                               ELSE 'x' || i || '@flu.example' END, NULL, '$key'))
	                    FROM generate_series(1, $1) AS i" >/dev/null
}
flushed() { q -d membership -c "SELECT coalesce(sum(allowed), 0) FROM membership.usage_minutes WHERE api_key_id = $key_id"; }
flusher_pid() { q -d membership -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'membership usage flusher'"; }

calls 30
wait_for 10 "SELECT coalesce(sum(allowed), 0) = 30 FROM membership.usage_minutes WHERE api_key_id = $key_id"
is "$(flushed)" 30 "thirty calls are in membership.usage_minutes within seconds"
is "$(q -d membership -c "SELECT sum(verified_true) || '/' || sum(verified_false) FROM membership.usage_minutes WHERE api_key_id = $key_id")" \
	"15/15" "with their answers counted"

pid=$(flusher_pid)
kill -9 "$pid"
wait_for 30 "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'membership usage flusher' AND pid <> $pid"
like "$(flusher_pid)" '^[0-9]+$' "a flusher killed with SIGKILL is back by itself (after the server's crash restart)"
is "$(flushed)" 30 "no flushed minute was lost"
calls 20
wait_for 10 "SELECT coalesce(sum(allowed), 0) = 50 FROM membership.usage_minutes WHERE api_key_id = $key_id"
is "$(flushed)" 50 "calls after the restart are flushed too"

# With flushes a minute apart, only the flush on the way out can write
# these seven calls in time.
q -d membership -c "ALTER SYSTEM SET membership.usage_flush_interval = '60s'" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1.5
calls 7
pid=$(flusher_pid)
q -d membership -c "SELECT pg_terminate_backend($pid)" >/dev/null
wait_for 5 "SELECT coalesce(sum(allowed), 0) = 57 FROM membership.usage_minutes WHERE api_key_id = $key_id"
is "$(flushed)" 57 "a flusher stopped with SIGTERM writes what it holds before it goes"
q -d membership -c "ALTER SYSTEM RESET membership.usage_flush_interval" -c "SELECT pg_reload_conf()" >/dev/null
wait_for 20 "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'membership usage flusher' AND pid <> $pid"
like "$(flusher_pid)" '^[0-9]+$' "and it is restarted"

# The audit: every call recorded, with the hash of the address only.
q -d membership -c "SET membership.audit_verifications = 'all'" \
	-c "SELECT membership_api.verify_member('F1@flu.example', NULL, '$key')" \
	-c "SELECT membership_api.verify_member(NULL, 'nobody', '$key')" >/dev/null
wait_for 10 "SELECT count(*) = 2 FROM membership.verification_audit WHERE api_key_id = $key_id"
is "$(q -d membership -c "SELECT string_agg(lookup || ':' || verified || ':' ||
                            (subject_hash = CASE lookup WHEN 'email' THEN sha256('f1@flu.example') ELSE sha256('nobody') END),
                            ',' ORDER BY lookup)
                          FROM membership.verification_audit WHERE api_key_id = $key_id")" \
	"email:true:true,user_id:false:true" "audit records hold the SHA-256 of what was looked up"
is "$(q -d membership -c "SELECT count(*) FROM membership.verification_audit a WHERE api_key_id = $key_id
                          AND (a::text ILIKE '%flu.example%' OR a::text LIKE '%nobody%')")" 0 \
	"and never the address or user id itself"
finish
