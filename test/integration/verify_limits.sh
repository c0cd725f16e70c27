#!/usr/bin/env bash
# Plan limits are exact under concurrency: ten sessions hammering one key
# across a minute boundary get exactly the plan's number of allowed calls in
# each calendar minute, and every other call is refused at once with PT429.
. "$(dirname "$0")/tap.bash"
plan 5

worker_db
q -d membership >/dev/null <<'SQL'
SELECT fixture.new_org('lim-a');
SELECT membership.set_plan('limit40', 40);
INSERT INTO fixture.keys VALUES ('lim-a:limited', membership.issue_api_key(fixture.org('lim-a'), 'lim-a-bank', 'limit40'));
SELECT membership_api.sync_members('[{"external_id": "l1", "email": "l1@lim.example"}]', 'delta', fixture.key('lim-a:org'));
SQL
key=$(q -d membership -c "SELECT fixture.key('lim-a:limited')")
key_id=$(q -d membership -c "SELECT id FROM membership.api_keys WHERE prefix = left('$key', 11)")

# Start five seconds before a minute ends, run for ten seconds.
sec=$(date -u +%S); sec=${sec#0}
[ "$sec" -lt 55 ] && sleep $((55 - sec))
for s in 1 2 3 4 5 6 7 8 9 10; do
	q -d membership >"$MB_WORK/limits.$s" <<SQL &
SET client_min_messages = notice;
DO \$\$
DECLARE
    allowed int := 0;
    refused int := 0;
    other int := 0;
    stop timestamptz := clock_timestamp() + interval '10 seconds';
BEGIN
    WHILE clock_timestamp() < stop LOOP
        BEGIN
            PERFORM membership_api.verify_member('l1@lim.example', NULL, '$key');
            allowed := allowed + 1;
        EXCEPTION
            WHEN SQLSTATE 'PT429' THEN refused := refused + 1;
            WHEN OTHERS THEN other := other + 1;
        END;
    END LOOP;
    RAISE NOTICE 'counts % % %', allowed, refused, other;
END
\$\$;
SQL
done 2>"$MB_WORK/limits.notices"
wait
read -r allowed refused other < <(sed -n 's/.*counts \([0-9]*\) \([0-9]*\) \([0-9]*\)$/\1 \2 \3/p' "$MB_WORK/limits.notices" |
	awk '{ a += $1; r += $2; o += $3 } END { print a, r, o }')

is "$allowed" 80 "ten sessions across a minute boundary got exactly 2 x 40 allowed calls"
like "$refused" '^[1-9][0-9]+$' "every other call was refused ($refused of them)"
is "$other" 0 "no call failed any other way"

wait_for 10 "SELECT sum(refused) = $refused FROM membership.usage_minutes WHERE api_key_id = $key_id" ||
	diag "$(q -d membership -c "SELECT minute, allowed, refused FROM membership.usage_minutes WHERE api_key_id = $key_id")"
is "$(q -d membership -c "SELECT string_agg(allowed::text, ',' ORDER BY minute) FROM (SELECT minute, sum(allowed) AS allowed
                          FROM membership.usage_minutes WHERE api_key_id = $key_id GROUP BY minute) m")" "40,40" \
	"the flushed usage shows two calendar minutes of exactly 40 allowed calls"
is "$(q -d membership -c "SELECT sum(refused) FROM membership.usage_minutes WHERE api_key_id = $key_id")" "$refused" \
	"and exactly the refused calls the clients saw"
finish
