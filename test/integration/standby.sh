#!/usr/bin/env bash
# On a hot standby, which replays changes without firing the triggers that
# keep the shared caches exact: verification refuses to run (it could
# neither limit nor meter), and API keys are read from the table, so a key
# revoked on the primary is refused on the standby too.
. "$(dirname "$0")/tap.bash"
plan 4

worker_db
q -d membership >/dev/null <<'SQL'
SELECT fixture.new_org('sby-a');
SELECT membership_api.sync_members('[{"external_id": "y1", "email": "y1@sby.example"}]', 'delta', fixture.key('sby-a:org'));
SQL
key=$(q -d membership -c "SELECT fixture.key('sby-a:provider')")
okey=$(q -d membership -c "SELECT fixture.key('sby-a:org')")

mkdir -p "$MB_WORK/standby"
chown postgres: "$MB_WORK/standby" 2>/dev/null || true
as_postgres pg_basebackup -h "$PGHOST" -p "$PGPORT" -U postgres -D "$MB_WORK/standby/data" -R -X stream >/dev/null
{
	echo "unix_socket_directories = '$MB_WORK/standby'"
	echo "hot_standby = on"
} | as_postgres tee -a "$MB_WORK/standby/data/postgresql.conf" >/dev/null
mb_cluster_start standby
standby() { PGHOST=$MB_WORK/standby q -d membership -v VERBOSITY=terse "$@" 2>&1; }

like "$(standby -c "SELECT membership_api.verify_member('y1@sby.example', NULL, '$key')")" \
	'verification is not available on a standby server' "verify_member refuses to run on a standby"
# sync authenticates before it writes: a valid key gets as far as the write
like "$(standby -c "SELECT membership_api.sync_members('[]', 'delta', '$okey')")" \
	'read-only transaction' "a valid key passes authentication on the standby"
q -d membership -c "SELECT membership.revoke_api_key('$okey')" >/dev/null
wait_for 10 "SELECT revoked_at IS NOT NULL FROM membership.api_keys WHERE prefix = left('$okey', 11)" membership
sleep 1
like "$(standby -c "SELECT membership_api.sync_members('[]', 'delta', '$okey')")" \
	'has been revoked' "a key revoked on the primary is refused on the standby at once"
is "$(standby -c "SELECT count(*) FROM membership.members WHERE external_id = 'y1'")" 1 \
	"the standby has the data"

mb_cluster_stop standby
finish
