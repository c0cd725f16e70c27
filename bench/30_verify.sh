# shellcheck shell=bash
# Provider verification throughput and latency, pgbench -M prepared, 8
# clients over the Unix socket, as a ratio to SELECT 1 measured in the same
# run; beside it the plain PL/pgSQL version of the same lookup, and
# verification with limits and metering, or the answer cache, switched off.
# Sourced by script/bench.
#
# A provider binds the address it is asking about as a parameter; pgbench
# can only make numbers, so each call builds its address on the server from
# a random number.  The data set's addresses (first.last.N@domain) take two
# array look-ups and four concatenations to rebuild, which alone costs a
# third of a SELECT 1 round trip here, so the questions go to a tenth
# organisation of 13,500 members whose addresses are "mN@verify.example"
# (one question in ten is about someone who is not a member), beside the
# 118,000 members of the data set in the same tables and indexes.  The cost
# of building even that address is shown on its own line.
psql -X -q -v ON_ERROR_STOP=1 -f "$MB_ROOT/bench/reference/verify_plpgsql.sql" >/dev/null
key=$(psql -X -At -v ON_ERROR_STOP=1 <<'SQL'
SELECT membership.set_plan('bench_unlimited', NULL);
SELECT membership.create_organisation('verifybench', 'Verification benchmark') IS NOT NULL;
SELECT membership_api.sync_members(
    (SELECT jsonb_agg(jsonb_build_object(
                'external_id', 'VB-' || i, 'email', 'm' || i || '@verify.example',
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
printf '\\set i random(1, 15000)\nSELECT membership_api.verify_member(%s, NULL, :key);\n' "$email" >"$MB_BENCH/verify.sql"
printf '\\set i random(1, 15000)\nSELECT bench.verify_member_plpgsql(%s, NULL, :key);\n' "$email" >"$MB_BENCH/verify_plpgsql.sql"
printf '\\set i random(1, 15000)\nSELECT %s;\n' "$email" >"$MB_BENCH/address.sql"

# warm the caches, then measure each beside a fresh floor
echo "SELECT 1;" >"$MB_BENCH/select1.sql"
mb_pgbench 8 5 "$MB_BENCH/verify.sql" -D key="$key" >/dev/null
read -r floor_tps floor_p99 < <(mb_pgbench 8 10 "$MB_BENCH/select1.sql")
read -r addr_tps addr_p99 < <(mb_pgbench 8 10 "$MB_BENCH/address.sql")
read -r verify_tps verify_p99 < <(mb_pgbench 8 10 "$MB_BENCH/verify.sql" -D key="$key")
read -r off_tps off_p99 < <(PGOPTIONS="-c membership.verification_limits=off" mb_pgbench 8 10 "$MB_BENCH/verify.sql" -D key="$key")
read -r nocache_tps nocache_p99 < <(PGOPTIONS="-c membership.verify_answer_cache=off" mb_pgbench 8 10 "$MB_BENCH/verify.sql" -D key="$key")
read -r plpgsql_tps plpgsql_p99 < <(mb_pgbench 8 10 "$MB_BENCH/verify_plpgsql.sql" -D key="$key")

cat <<MD
## Provider verification

pgbench \`-M prepared\`, 8 clients, Unix socket, 10 s each, one \`verify_member\` by e-mail per
transaction against an organisation of 13,500 members beside the data set's 118,000 (one question
in ten about a non-member; the address is built on the server from a random number, see
\`bench/30_verify.sh\`), key on an unlimited plan (the limiter still counts every call). Target:
\`verify_member\` >= 0.85 x \`SELECT 1\` and p99 < 1 ms; limits and metering on >= 0.95 x off.

| what | throughput | x \`SELECT 1\` | p99 latency |
|---|---|---|---|
| \`SELECT 1\` (the floor, measured right before) | $floor_tps/s | 1.00 | $floor_p99 ms |
| building the address alone (what every call below includes) | $addr_tps/s | $(mb_ratio "$addr_tps" "$floor_tps") | $addr_p99 ms |
| **\`membership_api.verify_member\`** | **$verify_tps/s** | **$(mb_ratio "$verify_tps" "$floor_tps")** | **$verify_p99 ms** |
| \`verify_member\`, limits and metering off | $off_tps/s | $(mb_ratio "$off_tps" "$floor_tps") | $off_p99 ms |
| \`verify_member\`, answer cache off (every call reads the tables) | $nocache_tps/s | $(mb_ratio "$nocache_tps" "$floor_tps") | $nocache_p99 ms |
| reference: the same lookup in plain PL/pgSQL (\`bench/reference/verify_plpgsql.sql\`) | $plpgsql_tps/s | $(mb_ratio "$plpgsql_tps" "$floor_tps") | $plpgsql_p99 ms |

Limits and metering on vs off: $(mb_ratio "$verify_tps" "$off_tps") (target >= 0.95).
\`verify_member\` vs the PL/pgSQL reference: $(mb_ratio "$verify_tps" "$plpgsql_tps")x.

MD
