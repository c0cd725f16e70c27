# shellcheck shell=bash
# Nightly scoring of the realistic data set (118,000 members, 150 benefits,
# a year of usage: bench/benefits_catalogue.sql) by membership.score_feeds()
# in C, beside the plain SQL window-function version of the same formula
# (bench/reference/scoring_window.sql) in the same run, both writing every
# member's top 20; the two results are compared feed by feed.  Sourced by
# script/bench.
mb_log "scoring: loading the benefit catalogue, consents, preferences and a year of usage"
psql -X -q -v ON_ERROR_STOP=1 -f "$MB_ROOT/bench/benefits_catalogue.sql" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -c 'SELECT benefits_dataset.create_catalogue()' \
	-c 'SELECT benefits_dataset.create_history()' -c 'VACUUM ANALYZE' >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -f "$MB_ROOT/bench/reference/scoring_window.sql" >/dev/null

median3() { printf '%s\n' "$@" | sort -n | sed -n 2p; }

# thousands separated by commas
n() { psql -X -At -c "SELECT to_char($1, 'FM999,999,999')"; }
# the organisations of the data set (other benchmark modules may have added
# organisations that offer nothing, whose members get no feed)
read -r members active offers uses tracked <<<"$(psql -X -At -F ' ' -c "
    SELECT (SELECT count(*) FROM membership.members m JOIN membership.organisations o ON o.id = m.organisation_id
            WHERE o.slug IN (SELECT slug FROM dataset.organisations) AND m.removed_at IS NULL),
           (SELECT count(*) FROM membership.members m JOIN membership.organisations o ON o.id = m.organisation_id
            WHERE o.slug IN (SELECT slug FROM dataset.organisations) AND m.removed_at IS NULL AND m.status = 'active'),
           (SELECT count(*) FROM membership.benefit_offers),
           (SELECT count(*) FROM membership.benefit_usage),
           (SELECT count(member_id) FROM membership.benefit_usage)")"

# The first night: no feed stored yet, every feed written.  Three runs,
# the median counts.
runs=()
for _ in 1 2 3; do
	psql -X -q -c 'TRUNCATE membership.feeds' >/dev/null
	runs+=("$(mb_sql_ms 'SELECT membership.score_feeds()')")
done
first=$(median3 "${runs[@]}")
feeds=$(psql -X -At -c 'SELECT count(*) FROM membership.feeds')

# The next nights: nothing changed; then a benefit launched today and
# promoted by every organisation, which changes every feed.
same=$(mb_sql_ms 'SELECT membership.score_feeds()')
psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SELECT membership.offer_benefit(o.id, b.id, 1)
FROM membership.organisations o,
     (SELECT membership.create_benefit('gearhub', 'electronics', 'Launch offer', 0.5) AS id) b
WHERE o.slug IN (SELECT slug FROM dataset.organisations);
SQL
changed=$(mb_sql_ms 'SELECT membership.score_feeds()')
changed_feeds=$(psql -X -At -c "SELECT count(*) FROM membership.feeds WHERE benefit_ids @> ARRAY[(SELECT max(id) FROM membership.benefits)]")

# The reference, on the same data, into an empty table.
psql -X -q -c 'TRUNCATE bench.feeds' >/dev/null
reference=$(mb_sql_ms 'SELECT bench.score_feeds_sql()')
differences=$(psql -X -At -c "
    SELECT count(*) FROM membership.feeds f FULL JOIN bench.feeds b USING (organisation_id, member_id)
    WHERE f.benefit_ids IS DISTINCT FROM b.benefit_ids OR f.scores IS DISTINCT FROM b.scores")

# One member at a time: 1,000 refreshes (what a change of preference or
# consent does).
refresh=$(mb_sql_ms "SELECT count(membership.refresh_feed(id)) FROM (SELECT id FROM membership.members
                      WHERE status = 'active' AND removed_at IS NULL ORDER BY id LIMIT 1000) m")

cat <<MD
## Nightly scoring

\`membership.score_feeds()\` (C, one pass, \`src/scoring.c\`) scoring the $(n "$active") active members (of
$(n "$members")) of the data set's 9 organisations against the benefits their organisation offers ($(n "$offers") offers of 150 benefits, so
about 17 million scores), with a year of usage ($(n "$uses") uses, $(n "$tracked") kept per member), consents,
bookmarks and hidden categories (\`bench/benefits_catalogue.sql\`), writing each member's top 20 in one
transaction. The reference is the same formula as one plain SQL statement, every pair scored and
ranked with \`row_number()\`, the top 20 aggregated and written to a table shaped like
\`membership.feeds\` (\`bench/reference/scoring_window.sql\`, run as a superuser, so without the
cost of row-level security). Both wrote the same $(n "$feeds") feeds: **$differences differences**.

| pass | score_feeds (C) | plain SQL window function | speed-up |
|---|---|---|---|
| first night: every feed written (median of 3) | $first ms | $reference ms | **$(mb_ratio "$reference" "$first")×** (target ≥ 20×) |
| next night, nothing changed | $same ms | | $(mb_ratio "$reference" "$same")× |
| next night, a new promoted benefit in $(n "$changed_feeds") feeds | $changed ms | | $(mb_ratio "$reference" "$changed")× |
| one member refreshed (\`refresh_feed\`, mean of 1,000) | $(awk -v t="$refresh" 'BEGIN { printf "%.2f", t / 1000 }') ms | | |

MD
