# shellcheck shell=bash
# Provider verification throughput and latency, pgbench -M prepared, 8
# clients over the Unix socket, against the data set's largest organisation
# (13,500 members; one question in ten is about someone who is not a
# member), as a ratio to SELECT 1 measured in the same run; beside it the
# plain PL/pgSQL version of the same lookup, and verification with limits
# and metering switched off.  Sourced by script/bench.
psql -X -q -v ON_ERROR_STOP=1 -f "$MB_ROOT/bench/reference/verify_plpgsql.sql" >/dev/null
key=$(psql -X -At -v ON_ERROR_STOP=1 <<'SQL'
SELECT membership.set_plan('bench_unlimited', NULL);
SELECT membership.issue_api_key(o.id, 'northbank', 'bench_unlimited', 'benchmark')
FROM membership.organisations o WHERE o.slug = 'physicians';
SQL
)
key=$(echo "$key" | tail -n 1)

# The data set's addresses, rebuilt from the member number as
# bench/dataset.sql builds them (numbers past 13,500 are not members).
email="('{anna,bjorn,camilla,david,eva,fredrik,guro,hans,ingrid,jonas,kari,lars,maria,nils,ole,petra,ragnhild,sindre,tone,ulrik,vera,william,yasmin,zara,ahmed,leila,tomasz,ana,mikkel,sofie}'::text[])[1 + (:i * 7) % 30] || '.' || ('{hansen,johansen,olsen,larsen,andersen,pedersen,nilsen,kristiansen,jensen,karlsen,johnsen,pettersen,eriksen,berg,haugen,hagen,johannessen,andreassen,jacobsen,dahl,jorgensen,halvorsen,henriksen,lund,sorensen,jakobsen,moen,gundersen,iversen,strand}'::text[])[1 + (:i / 30) % 30] || '.' || :i || '@physicians.example'"
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
transaction against the largest organisation (13,500 members, one question in ten about a
non-member), key on an unlimited plan (the limiter still counts every call). Target:
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
