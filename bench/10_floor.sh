# shellcheck shell=bash
# The floor: a bare round trip, SELECT 1, which every throughput target is a
# ratio of.  Sourced by script/bench.
echo 'SELECT 1;' >"$MB_BENCH/select1.sql"
read -r tps p99 < <(mb_pgbench 8 10 "$MB_BENCH/select1.sql")
echo "$tps" >"$MB_BENCH/floor_tps"

cat <<MD
## The floor

| what | throughput | p99 latency |
|---|---|---|
| \`SELECT 1\`, pgbench \`-M prepared\`, 8 clients, Unix socket, 10 s | $tps/s | $p99 ms |

MD
