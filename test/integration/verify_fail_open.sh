#!/usr/bin/env bash
# With small shared tables: when every limiter slot is taken, verification
# fails open (calls are answered, uncounted), says so in the log once a
# minute and in membership.metering_status; when the answer cache is full
# it makes room and every answer stays right.
. "$(dirname "$0")/tap.bash"
plan 6

mb_cluster_init small "membership.rate_limit_slots = 64" "membership.verify_cache_size = 1024" \
	"membership.database = 'small'"
mb_cluster_start small
export PGHOST=$MB_WORK/small
psql -X -q -d postgres -c 'CREATE DATABASE small' >/dev/null
q -d small -c 'CREATE EXTENSION membership' -f test/fixtures.sql >/dev/null
q -d small >/dev/null <<'SQL'
SELECT fixture.new_org('small-a');
SELECT membership_api.sync_members(
    (SELECT jsonb_agg(jsonb_build_object('external_id', 's' || i, 'email', 's' || i || '@small.example',
                                         'status', CASE WHEN i % 3 = 0 THEN 'lapsed' ELSE 'active' END))
     FROM generate_series(1, 3000) AS i), 'full', fixture.key('small-a:org'));
SELECT membership.create_provider('small-shop-' || i, 'Shop ' || i) FROM generate_series(1, 80) AS i;
CREATE TABLE small_keys AS
SELECT i, membership.issue_api_key(fixture.org('small-a'), 'small-shop-' || i, 'pro') AS key
FROM generate_series(1, 80) AS i;
SQL

# 80 keys in one minute need 80 slots; there are 64.
answers=$(q -d small -c "SELECT count(*) FILTER (WHERE membership_api.verify_member('s1@small.example', NULL, key)->>'verified' = 'true')
                         FROM small_keys")
is "$answers" 80 "all 80 keys get their answer although the limiter has 64 slots"
like "$(q -d small -c 'SELECT fail_open_calls FROM membership.metering_status')" '^[1-9][0-9]*$' \
	"metering_status counts the calls let through unmetered"
is "$(q -d small -c 'SELECT limiter_slots_used = limiter_slots FROM membership.metering_status')" t \
	"and shows the limiter full"
is "$(grep -c 'verification counter table is full' "$MB_WORK/small/server.log")" 1 \
	"the log says so, once for the minute"

# 3,000 distinct questions through a cache of 1,024 answers.
wrong=$(q -d small -c "SELECT count(*) FROM generate_series(1, 3000) AS n, small_keys k
                       WHERE k.i = 1 + n % 40
                         AND (membership_api.verify_member('s' || n || '@small.example', NULL, k.key)->>'verified' = 'true')
                             <> (n % 3 <> 0)")
is "$wrong" 0 "every answer is right while the answer cache keeps making room"
like "$(q -d small -c 'SELECT verify_cache_evictions FROM membership.metering_status')" '^[1-9][0-9]*$' \
	"and it did have to make room"

mb_cluster_stop small
finish
