# shellcheck shell=bash
# Member sync of the largest organisation (13,500 members) in one call:
# into an empty organisation, again unchanged, and again with 1% changed;
# beside the row-by-row PL/pgSQL reference doing the same.  Sourced by
# script/bench.
psql -X -q -v ON_ERROR_STOP=1 -f "$MB_ROOT/bench/reference/sync_row_by_row.sql" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE TABLE bench.payloads AS
SELECT 'full' AS name, dataset.member_list('physicians') AS members
UNION ALL
SELECT 'changed', (SELECT jsonb_agg(CASE WHEN ord % 100 = 0
                                         THEN e || '{"membership_tier": "retired", "profession": "surgeon"}'
                                         ELSE e END ORDER BY ord)
                   FROM jsonb_array_elements(dataset.member_list('physicians')) WITH ORDINALITY AS t(e, ord));
SELECT membership.create_organisation('bench-sync-' || r, 'Sync benchmark ' || r) FROM generate_series(1, 2) AS r;
SQL

key=$(psql -X -At -c "SELECT membership.issue_api_key(id, NULL, 'enterprise') FROM membership.organisations WHERE slug = 'bench-sync-1'")
ref_org=$(psql -X -At -c "SELECT id FROM membership.organisations WHERE slug = 'bench-sync-2'")
payload="(SELECT members FROM bench.payloads WHERE name = 'full')"
changed="(SELECT members FROM bench.payloads WHERE name = 'changed')"

first=$(mb_sql_ms "SELECT membership_api.sync_members($payload, 'full', '$key')")
same=$(mb_sql_ms "SELECT membership_api.sync_members($payload, 'full', '$key')")
delta=$(mb_sql_ms "SELECT membership_api.sync_members($changed, 'full', '$key')")
ref_first=$(mb_sql_ms "SELECT bench.sync_row_by_row('$ref_org', $payload)")
ref_same=$(mb_sql_ms "SELECT bench.sync_row_by_row('$ref_org', $payload)")
ref_delta=$(mb_sql_ms "SELECT bench.sync_row_by_row('$ref_org', $changed)")

cat <<MD
## Member sync

One \`membership_api.sync_members(..., 'full')\` call with the largest organisation's 13,500 members
(with dependents), against the reference: a PL/pgSQL loop of \`INSERT ... ON CONFLICT\` per member
(\`bench/reference/sync_row_by_row.sql\`, which validates less, ignores dependents and bypasses
row-level security).

| sync of 13,500 members | sync_members | row-by-row reference | speed-up |
|---|---|---|---|
| into an empty organisation | $first ms | $ref_first ms | $(mb_ratio "$ref_first" "$first")× |
| again, nothing changed | $same ms | $ref_same ms | $(mb_ratio "$ref_same" "$same")× |
| again, 1% of members changed | $delta ms | $ref_delta ms | $(mb_ratio "$ref_delta" "$delta")× |

MD
