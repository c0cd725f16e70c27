#!/usr/bin/env bash
# PostgREST-shaped requests: one connection logged in as the gateway role
# runs, per request, exactly what PostgREST runs (a transaction that sets
# role, claims and headers locally, then calls the function), and every
# request acts for its own caller's organisation and nobody else's.
. "$(dirname "$0")/tap.bash"
plan 9

db=postgrest_shape
fresh_db $db
q -d $db <<'SQL' >/dev/null
SELECT fixture.new_org('rest-a'), fixture.new_org('rest-b');
SELECT membership_api.sync_members('[{"external_id": "m", "email": "m@rest-a.example",
    "dependents": [{"email": "dep-a@rest.example"}]}]', 'delta', fixture.key('rest-a:org'));
SELECT membership_api.sync_members('[{"external_id": "m", "email": "m@rest-b.example",
    "dependents": [{"email": "dep-b@rest.example"}]}]', 'delta', fixture.key('rest-b:org'));
SQL
member_a=$(q -d $db -c "SELECT fixture.claims('member', 'rest-a', 'm')")
member_b=$(q -d $db -c "SELECT fixture.claims('member', 'rest-b', 'm')")
admin_b=$(q -d $db -c "SELECT fixture.claims('org_admin', 'rest-b')")
key_a=$(q -d $db -c "SELECT fixture.key('rest-a:org')")

# request ROLE CLAIMS HEADERS CALL: one PostgREST request, as PostgREST
# sends it (role and settings through set_config(..., true)).
request() {
	cat <<SQL
BEGIN;
SELECT set_config('search_path', 'membership_api', true), set_config('role', '$1', true),
       set_config('request.jwt.claims', '$2', true), set_config('request.method', 'POST', true),
       set_config('request.path', '/rpc/x', true), set_config('request.headers', '$3', true) \\g /dev/null
$4;
COMMIT;
SQL
}

out=$({
	request membership_member "$member_a" '{"user-agent": "test"}' 'SELECT email FROM dependents()'
	request membership_member "$member_b" '{}' 'SELECT email FROM dependents()'
	request membership_provider '{"role": "membership_provider"}' "{\"x-api-key\": \"$key_a\"}" \
		"SELECT sync_members('[{\"external_id\": \"via-header\"}]')->>'inserted'"
	request membership_org_admin "$admin_b" '{}' "SELECT sync_members('[{\"external_id\": \"via-jwt\"}]')->>'inserted'"
	request membership_provider '{"role": "membership_provider"}' '{}' "SELECT sync_members('[]')"
	request membership_member "$member_a" '{}' 'SELECT email FROM dependents()'
	request membership_member '{"role": "membership_member"}' '{}' 'SELECT count(*) FROM dependents()'
	echo "SELECT membership.current_org_id();"
} | psql -X -q -At -v VERBOSITY=terse -U authenticator -d $db 2>&1)

mapfile -t lines <<<"$out"
is "${lines[0]}" "dep-a@rest.example" "a member of A sees A's dependent"
is "${lines[1]}" "dep-b@rest.example" "the next request on the same connection, a member of B, sees B's"
is "${lines[2]}" "1" "an anonymous request with A's key in x-api-key syncs A"
is "${lines[3]}" "1" "an administrator of B syncs B"
like "${lines[4]}" "no credentials supplied" "a request without credentials is refused"
is "${lines[5]}" "dep-a@rest.example" "the connection still serves the next request"
like "${lines[6]}" 'JWT claims lack "org_id"' "a member token without an organisation is refused"

where=$(q -d $db -c "SELECT string_agg(o.slug || ':' || m.external_id, ',' ORDER BY o.slug, m.external_id)
                     FROM membership.members m JOIN membership.organisations o ON o.id = m.organisation_id
                     WHERE m.external_id LIKE 'via-%'")
is "$where" "rest-a:via-header,rest-b:via-jwt" "each request wrote to its own caller's organisation"
like "${lines[7]}" "permission denied for schema membership" "the gateway session itself reaches nothing internal"

psql -X -q -d postgres -c "DROP DATABASE $db" >/dev/null
finish
