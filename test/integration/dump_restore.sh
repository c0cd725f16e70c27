#!/usr/bin/env bash
# A logical backup keeps every row: the extension registers its tables with
# pg_extension_config_dump, so pg_dump writes their data and a restore into
# a new database gives back the same rows, and the restored data still
# works (keys still authenticate).
. "$(dirname "$0")/tap.bash"
plan 5

fresh_db dump_src
q -d dump_src <<'SQL' >/dev/null
SELECT fixture.new_org('dump-a'), fixture.new_org('dump-b');
SELECT membership.set_plan('custom', 42);
SELECT membership.set_plan('free', 90);
-- a rotated key refers to its successor, a later row
INSERT INTO fixture.keys VALUES ('dump-a:rotated', membership.rotate_api_key(fixture.key('dump-a:provider')));
SELECT membership_api.sync_members(
    (SELECT jsonb_agg(jsonb_build_object('external_id', 'x' || i, 'email', 'x' || i || '@dump.example',
                                         'dependents', CASE WHEN i % 10 = 0
                                             THEN jsonb_build_array(jsonb_build_object('email', 'd' || i || '@dump.example')) END))
     FROM generate_series(1, 500) AS i), 'full', fixture.key('dump-a:org'));
SQL

# Every row of every table of the extension, as one checksum per table.
checksums() {
	q -d "$1" <<'SQL'
SELECT string_agg(format('%s:%s', c.relname,
                         (xpath('/row/c/text()', query_to_xml(format(
                              'SELECT md5(coalesce(string_agg(t::text, '','' ORDER BY t::text), '''')) AS c FROM %s AS t',
                              c.oid::regclass), false, false, '')))[1]), ' ' ORDER BY c.relname)
FROM pg_class c WHERE c.relnamespace = 'membership'::regnamespace AND c.relkind = 'r';
SQL
}

before=$(checksums dump_src)
pg_dump -Fc -d dump_src -f "$MB_WORK/dump_src.dump"
psql -X -q -d postgres -c 'DROP DATABASE IF EXISTS dump_dst' -c 'CREATE DATABASE dump_dst' >/dev/null
restore_err=$(pg_restore -d dump_dst "$MB_WORK/dump_src.dump" 2>&1)
is "$restore_err" "" "pg_restore reports no error"
after=$(checksums dump_dst)
is "$after" "$before" "every table holds the same rows after dump and restore"

is "$(q -d dump_dst -c "SELECT string_agg(plan || '=' || requests_per_minute, ',' ORDER BY plan) FROM membership.plans WHERE plan IN ('custom', 'free')")" \
	"custom=42,free=90" "plans survive with their limits, a changed seeded plan included"
key=$(q -d dump_src -c "SELECT fixture.key('dump-a:org')")
is "$(q -d dump_dst -c "SELECT membership_api.sync_members('[{\"external_id\": \"x1\"}]', 'delta', '$key')->>'unchanged'")" "1" \
	"a key issued before the dump authenticates after the restore"
is "$(q -d dump_dst -c "SELECT membership.issue_api_key(id, NULL) IS NOT NULL FROM membership.organisations WHERE slug = 'dump-b'")" "t" \
	"identity sequences continue after the restore"

psql -X -q -d postgres -c 'DROP DATABASE dump_src' -c 'DROP DATABASE dump_dst' >/dev/null
finish
