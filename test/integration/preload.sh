#!/usr/bin/env bash
# Without shared_preload_libraries the extension still installs and works,
# and what needs shared memory says clearly that preloading is required.
. "$(dirname "$0")/tap.bash"
plan 5

mb_cluster_init nopreload "shared_preload_libraries = ''"
mb_cluster_start nopreload
export PGHOST=$MB_WORK/nopreload
psql -X -q -d postgres -c 'CREATE DATABASE plain' >/dev/null
is "$(q -d plain -c 'CREATE EXTENSION membership' -c "SELECT extversion IS NOT NULL FROM pg_extension WHERE extname = 'membership'" 2>&1)" \
	"t" "CREATE EXTENSION works without preloading"
q -d plain -f test/fixtures.sql >/dev/null
is "$(q -d plain -c "SELECT fixture.new_org('np-a') IS NOT NULL" \
        -c "SELECT membership_api.sync_members('[{\"external_id\": \"n1\", \"email\": \"n1@np.example\"}]', 'delta', fixture.key('np-a:org'))->>'inserted'" 2>&1 | tail -n 1)" \
	"1" "member sync works without preloading"
err=$(q -d plain -v VERBOSITY=default -c "SELECT membership_api.verify_member('n1@np.example', NULL, fixture.key('np-a:provider'))" 2>&1)
like "$err" 'verify_member requires the membership library to be preloaded' "verify_member says preloading is required"
like "$err" 'Add "membership" to "shared_preload_libraries"' "... and how to fix it"
like "$(q -d plain -c 'SELECT * FROM membership.metering_status' 2>&1)" 'requires the membership library to be preloaded' \
	"the metering views say so too"

mb_cluster_stop nopreload
finish
