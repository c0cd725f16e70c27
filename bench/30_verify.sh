# shellcheck shell=bash
# Provider verification throughput and latency, pgbench -M prepared, 8
# clients over the Unix socket, as a ratio to SELECT 1 measured in the same
# run; beside it the plain PL/pgSQL version of the same lookup, and
# verification with limits and metering, or the answer cache, switched off.
# Sourced by script/bench.
#
# A provider binds what it asks about as a parameter.  pgbench can only
# make numbers, so the questions go to a tenth organisation of 13,500
# members (beside the 118,000 of the data set, in the same tables and
# indexes) whose member numbers (external ids) are numbers: the headline
# asks by member number, bound as a text parameter like any provider's,
# and nothing is built on the server.  Asking by e-mail needs the address
# built on the server from a random number ("mN@verify.example"), which
# costs a part of a SELECT 1 round trip of its own; that line is shown too,
# with the cost of building the address alone.  One question in ten is
# about someone who is not a member.
psql -X -q -v ON_ERROR_STOP=1 -f "$MB_ROOT/bench/reference/verify_plpgsql.sql" >/dev/null
key=$(psql -X -At -v ON_ERROR_STOP=1 <<'SQL'
SELECT membership.set_plan('bench_unlimited', NULL);
SELECT membership.create_organisation('verifybench', 'Verification benchmark') IS NOT NULL;
SELECT membership_api.sync_members(
    (SELECT jsonb_agg(jsonb_build_object(
                'external_id', (100000 + i)::text, 'email', 'm' || i || '@verify.example',
                'membership_tier', CASE WHEN i % 5 = 0 THEN 'student' ELSE 'full' END,
                'status', CASE WHEN i % 17 = 0 THEN 'lapsed' ELSE 'active' END,
                'member_since', (date '1980-01-01' + i)::text) ORDER BY i)
     FROM generate_series(1, 13500) AS i),
    'full', membership.issue_api_key(o.id, NULL, 'bench_unlimited', 'member sync')) IS NOT NULL
FROM membership.organisations o WHERE o.slug = 'verifybench';
SELECT membership.issue_api_key(o.id, 'northbank', 'bench_unlimited', 'benchmark')
FROM membership.organisations o WHERE o.slug = 'verifybench';
SQL
)
key=$(echo "$key" | tail -n 1)

email="'m' || :i || '@verify.example'"
printf '\\set i random(100001, 115000)\nSELECT membership_api.verify_member(NULL, :i, :key);\n' >"$MB_BENCH/verify.sql"
printf '\\set i random(1, 15000)\nSELECT membership_api.verify_member(%s, NULL, :key);\n' "$email" >"$MB_BENCH/verify_email.sql"
printf '\\set i random(100001, 115000)\nSELECT bench.verify_member_plpgsql(NULL, :i, :key);\n' >"$MB_BENCH/verify_plpgsql.sql"
printf '\\set i random(1, 15000)\nSELECT %s;\n' "$email" >"$MB_BENCH/address.sql"

# The machine's speed drifts from one run to the next (a shared virtual
# machine), so each figure is measured in nine rounds of 2 s, alternating
# with what it is compared with, and the ratio is the median of the
# rounds' ratios; throughput and p99 are medians too.
# compare NAME BASE_CMD... -- CMD...: prints "tps p99 base_tps ratio" (medians)
compare() {
	local base=() cmd=() r out_b out_c
	while [ "$1" != -- ]; do base+=("$1"); shift; done
	shift
	cmd=("$@")
	: >"$MB_BENCH/rounds"
	for r in 1 2 3 4 5 6 7 8 9; do
		out_b=$("${base[@]}")
		out_c=$("${cmd[@]}")
		echo "${out_c% *} ${out_c#* } ${out_b% *}" >>"$MB_BENCH/rounds"
	done
	printf '%s %s %s %s\n' \
		"$(awk '{ print $1 }' "$MB_BENCH/rounds" | mb_median)" \
		"$(awk '{ print $2 }' "$MB_BENCH/rounds" | mb_median)" \
		"$(awk '{ print $3 }' "$MB_BENCH/rounds" | mb_median)" \
		"$(awk '{ printf "%.4f\n", $1 / $3 }' "$MB_BENCH/rounds" | mb_median)"
}
floor() { mb_pgbench 8 2 "$MB_BENCH/select1.sql"; }
verify() { mb_pgbench 8 2 "$MB_BENCH/verify.sql" -D key="$key"; }
verify_email() { mb_pgbench 8 2 "$MB_BENCH/verify_email.sql" -D key="$key"; }
verify_off() { PGOPTIONS="-c membership.verification_limits=off" verify; }
verify_nocache() { PGOPTIONS="-c membership.verify_answer_cache=off" verify; }
address() { mb_pgbench 8 2 "$MB_BENCH/address.sql"; }
plpgsql() { mb_pgbench 8 2 "$MB_BENCH/verify_plpgsql.sql" -D key="$key"; }

# warm the caches, then measure each against its own alternating floor
echo "SELECT 1;" >"$MB_BENCH/select1.sql"
mb_pgbench 8 5 "$MB_BENCH/verify.sql" -D key="$key" >/dev/null
read -r verify_tps verify_p99 floor_tps verify_ratio < <(compare floor -- verify)
read -r email_tps email_p99 floor2_tps email_ratio < <(compare floor -- verify_email)
read -r addr_tps addr_p99 floor6_tps addr_ratio < <(compare floor -- address)
read -r off_tps off_p99 floor3_tps off_ratio < <(compare floor -- verify_off)
read -r nocache_tps nocache_p99 floor4_tps nocache_ratio < <(compare floor -- verify_nocache)
read -r plpgsql_tps plpgsql_p99 floor5_tps plpgsql_ratio < <(compare floor -- plpgsql)
read -r _ _ _ limits_ratio < <(compare verify_off -- verify)
floor_p99=$(floor | awk '{ print $2 }')
ratio() { awk -v r="$1" 'BEGIN { printf "%.2f", r }'; }

cat <<MD
## Provider verification

pgbench \`-M prepared\`, 8 clients, Unix socket, nine rounds of 2 s alternating with the floor
(medians: see \`bench/30_verify.sh\`), one \`verify_member\` per transaction against an
organisation of 13,500 members beside the data set's 118,000 (one question in ten about a
non-member), key on an unlimited plan (the limiter still counts every call). The headline asks
by member number, bound as a parameter as a provider's client does; asking by e-mail needs the
address built on the server from pgbench's random number, shown on its own line with what
building it costs. Target: \`verify_member\` >= 0.85 x \`SELECT 1\` and p99 < 1 ms; limits and
metering on >= 0.95 x off.

| what | throughput | x \`SELECT 1\` | p99 latency |
|---|---|---|---|
| \`SELECT 1\` (the floor; each line below is divided by the floor rounds it alternated with) | $floor_tps/s | 1.00 | $floor_p99 ms |
| **\`membership_api.verify_member\`**, by member number | **$verify_tps/s** | **$(ratio "$verify_ratio")** | **$verify_p99 ms** |
| \`verify_member\` by e-mail, the address built on the server | $email_tps/s | $(ratio "$email_ratio") | $email_p99 ms |
| building the address alone (\`SELECT 'm' \|\| \$1 \|\| '@verify.example'\`) | $addr_tps/s | $(ratio "$addr_ratio") | $addr_p99 ms |
| \`verify_member\`, limits and metering off | $off_tps/s | $(ratio "$off_ratio") | $off_p99 ms |
| \`verify_member\`, answer cache off (every call reads the tables) | $nocache_tps/s | $(ratio "$nocache_ratio") | $nocache_p99 ms |
| reference: the same lookup in plain PL/pgSQL (\`bench/reference/verify_plpgsql.sql\`), by member number | $plpgsql_tps/s | $(ratio "$plpgsql_ratio") | $plpgsql_p99 ms |

Limits and metering on vs off, alternating rounds: $(ratio "$limits_ratio") (target >= 0.95).
\`verify_member\` vs the PL/pgSQL reference: $(mb_ratio "$verify_tps" "$plpgsql_tps")x.

MD
