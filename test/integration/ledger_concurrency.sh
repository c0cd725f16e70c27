#!/usr/bin/env bash
# The loyalty ledger under concurrency and a crash (issue #4), on a cluster
# of its own:
#   1. many sessions (pgbench) earn and redeem on a few accounts at once:
#      no balance below zero, no overdraft of the hot account, and
#      reconcile_ledger() is empty; and many sessions earning the same
#      few keys at once: each key earns once, the others are replays;
#   2. the same mixed load from sessions that log every result they got
#      back (so committed), then kill -9 of the postmaster, a restart:
#      every logged earn and redemption is in the ledger and
#      reconciliation is still empty.
. "$(dirname "$0")/tap.bash"
plan 11

mb_cluster_init ledger "membership.database = 'ledger'"
mb_cluster_start ledger
export PGHOST=$MB_WORK/ledger
psql -X -q -d postgres -c 'CREATE DATABASE ledger' >/dev/null
q -d ledger -c 'CREATE EXTENSION membership' -f test/fixtures.sql >/dev/null
q -d ledger >/dev/null <<'SQL'
SELECT fixture.new_org('lc-a');
SELECT membership_api.sync_members(
    (SELECT jsonb_agg(jsonb_build_object('external_id', 'c' || i)) FROM generate_series(1, 4) AS i),
    'full', fixture.key('lc-a:org'));
-- the members as 1..4, and a redemption that answers instead of raising
-- when the balance is short (pgbench would stop the client)
CREATE TABLE lc_members AS
SELECT i, membership.find_member(fixture.org('lc-a'), 'c' || i) AS id FROM generate_series(1, 4) AS i;
CREATE FUNCTION lc_redeem(i integer, points bigint, request text) RETURNS boolean
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM membership.redeem_points(fixture.org('lc-a'), (SELECT id FROM lc_members m WHERE m.i = lc_redeem.i),
                                     points, request, 1000000000);
    RETURN true;
EXCEPTION WHEN check_violation THEN
    RETURN false;
END
$$;
CREATE FUNCTION lc_earn(i integer, cents bigint, ref text) RETURNS bigint
    LANGUAGE sql AS $$
    SELECT membership.earn_points(fixture.org('lc-a'), (SELECT id FROM lc_members m WHERE m.i = lc_earn.i),
                                  cents, 'order', ref)
$$;
SELECT lc_earn(i, 100000, 'seed-' || i) FROM generate_series(1, 4) AS i;
SQL

# 1. pgbench: 12 sessions for 8 seconds, earning and redeeming on four
# accounts; account 1 is hot (half of all calls).
dir=$(mktemp -d -p "$MB_WORK")
cat >"$dir/earn.sql" <<'SQL'
\set m random(1, 4)
\set c random(100, 5000)
SELECT lc_earn(CASE WHEN :m <= 2 THEN 1 ELSE :m END, :c, 'pb-' || :client_id || '-' || nextval('lc_seq'));
SQL
cat >"$dir/redeem.sql" <<'SQL'
\set m random(1, 4)
\set p random(1, 400)
SELECT lc_redeem(CASE WHEN :m <= 2 THEN 1 ELSE :m END, :p, 'pb-' || :client_id || '-' || nextval('lc_seq'));
SQL
q -d ledger -c 'CREATE SEQUENCE lc_seq' >/dev/null
(cd "$dir" && pgbench -n -d ledger -c 12 -j 4 -T 8 -f earn.sql@1 -f redeem.sql@2 >out.txt 2>&1)
is "$?" 0 "twelve sessions earn and redeem on four accounts for 8 seconds without an error"
diag "$(grep -E '^(number of transactions actually processed|tps)' "$dir/out.txt" | tr '\n' ' ')"
counts=$(q -d ledger -c "SELECT count(*) FILTER (WHERE kind = 'EARN') || ' earns, ' ||
                                count(*) FILTER (WHERE kind = 'REDEEM') || ' redemptions'
                         FROM membership.loyalty_ledger")
like "$counts" '^[0-9]{3,} earns, [0-9]{3,} redemptions$' "hundreds of earns and redemptions were written ($counts)"
is "$(q -d ledger -c "SELECT count(*) FROM membership.loyalty_accounts WHERE balance < 0")" 0 "no balance is below zero"
is "$(q -d ledger -c "SELECT count(*) FROM membership.loyalty_ledger WHERE balance_after < 0")" 0 \
	"no ledger entry ever left a balance below zero"
is "$(q -d ledger -c "SELECT count(*) FROM membership.reconcile_ledger()")" 0 "reconcile_ledger() is empty"

# The same 30 keys from 8 sessions at once, on one account and on four:
# the first earn of a key writes, every other one is a replay (the same
# points, nothing written), whichever session and moment it comes from.
cat >"$dir/same_keys.sql" <<'SQL'
\set k random(1, 30)
SELECT lc_earn(CASE WHEN :k <= 15 THEN 2 ELSE :k % 4 + 1 END, 700 + :k, 'same-' || :k);
SQL
(cd "$dir" && pgbench -n -d ledger -c 8 -j 4 -T 4 -f same_keys.sql >out.txt 2>&1)
is "$?" 0 "eight sessions earning the same 30 keys for 4 seconds get no error"
is "$(q -d ledger -c "SELECT count(*) || ' entries, ' || count(DISTINCT idempotency_key) || ' keys'
                      FROM membership.loyalty_ledger WHERE source_ref LIKE 'same-%'")" "30 entries, 30 keys" \
	"each of the 30 keys earned once"

# 2. Clients that log what they got back, killed by a crash.  psql prints
# a result only once the server said the transaction is over, so every
# logged line is committed.
client() {
	local c=$1 n
	for n in $(seq 1 100000); do
		if [ $((n % 3)) -eq 0 ]; then
			echo "SELECT 'redeem:crash-$c-$n' WHERE lc_redeem($((n % 4 + 1)), $((n % 300 + 1)), 'crash-$c-$n');"
		else
			echo "SELECT 'earn:order:crash-$c-$n' WHERE lc_earn($((n % 4 + 1)), $((n % 5000 + 100)), 'crash-$c-$n') IS NOT NULL;"
		fi
	done | psql -X -q -At -d ledger >"$dir/client-$c.log" 2>/dev/null
}
for c in 1 2 3 4 5 6; do
	client "$c" &
	mb_track_pid $!
done
sleep 4
postmaster=$(mb_cluster_pid ledger)
children=$(pgrep -P "$postmaster" | tr '\n' ' ')
kill -9 "$postmaster"
wait
# the server's processes notice the postmaster is gone and exit
for pid in $children; do
	while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
done
logged=$(cat "$dir"/client-*.log | grep -c .)
like "$logged" '^[0-9]{2,}$' "the clients logged $logged committed results before the postmaster was killed"

mb_cluster_start ledger
cat "$dir"/client-*.log | grep . | sed "s/.*/('&')/" | paste -sd, >"$dir/keys.txt"
# on standard input: thousands of keys are too long for one argument
missing=$({
	echo "SELECT count(*) FROM (VALUES"
	cat "$dir/keys.txt"
	echo ") AS k(key) WHERE NOT EXISTS (SELECT FROM membership.loyalty_ledger l WHERE l.idempotency_key = k.key);"
} | q -d ledger)
is "$missing" 0 "after the restart every logged earn and redemption is in the ledger"
is "$(q -d ledger -c "SELECT count(*) FROM membership.reconcile_ledger()")" 0 "reconcile_ledger() is still empty"
is "$(q -d ledger -c "SELECT count(*) FROM membership.loyalty_accounts WHERE balance < 0")" 0 \
	"and no balance is below zero"

mb_cluster_stop ledger
finish
