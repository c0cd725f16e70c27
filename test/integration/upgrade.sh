#!/usr/bin/env bash
# The upgrade path: every earlier release, installed and holding data, then
# brought to the latest by ALTER EXTENSION UPDATE, ends up exactly like a
# fresh install of the latest (every object, column, constraint, policy,
# privilege and comment), keeps its data and keeps working.  Also: the
# pieces of released versions never change (src/sql/RELEASED).
. "$(dirname "$0")/tap.bash"

mapfile -t releases < <(sed -n 's/^RELEASES = //p' Makefile | tr ' ' '\n')
latest=${releases[-1]}
plan $((1 + 4 * (${#releases[@]} - 1)))

if sha256sum --quiet -c src/sql/RELEASED >/dev/null 2>&1; then
	pass "released install-script pieces are unchanged (src/sql/RELEASED)"
else
	fail "released install-script pieces are unchanged (src/sql/RELEASED)"
	sha256sum -c src/sql/RELEASED 2>&1 | grep -v ': OK$' | while read -r line; do diag "$line"; done
fi

psql -X -q -d postgres -c 'DROP DATABASE IF EXISTS upgrade_fresh' -c 'CREATE DATABASE upgrade_fresh' >/dev/null
q -d upgrade_fresh -c 'CREATE EXTENSION membership' >/dev/null
q -d upgrade_fresh -f test/integration/describe.sql >"$MB_WORK/describe.fresh"

for from in "${releases[@]:0:${#releases[@]}-1}"; do
	db=upgrade_from_${from//./_}
	psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
	q -d "$db" -c "CREATE EXTENSION membership VERSION '$from'" -f test/fixtures.sql >/dev/null
	q -d "$db" >/dev/null <<'SQL'
SELECT fixture.new_org('up-a');
SELECT membership_api.sync_members('[{"external_id": "u1", "email": "u1@up.example",
    "dependents": [{"email": "u1-dep@up.example"}]}, {"external_id": "u2"}]', 'delta', fixture.key('up-a:org'));
SQL
	before=$(q -d "$db" -c "SELECT count(*) || ' members, ' || (SELECT count(*) FROM membership.dependents) || ' dependents'
	                        FROM membership.members")

	err=$(q -d "$db" -c 'ALTER EXTENSION membership UPDATE' 2>&1)
	is "$err$(q -d "$db" -c "SELECT extversion FROM pg_extension WHERE extname = 'membership'")" "$latest" \
		"$from: ALTER EXTENSION UPDATE reaches $latest without error"

	q -d "$db" -f test/integration/describe.sql >"$MB_WORK/describe.$from"
	if diff -u "$MB_WORK/describe.fresh" "$MB_WORK/describe.$from" >"$MB_WORK/describe.$from.diff"; then
		pass "$from: the upgraded extension is identical to a fresh install of $latest"
	else
		fail "$from: the upgraded extension is identical to a fresh install of $latest"
		head -n 40 "$MB_WORK/describe.$from.diff" | while IFS= read -r line; do diag "$line"; done
	fi

	is "$(q -d "$db" -c "SELECT count(*) || ' members, ' || (SELECT count(*) FROM membership.dependents) || ' dependents'
	                     FROM membership.members")" "$before" "$from: the data is all there after the upgrade"
	is "$(q -d "$db" -c "SELECT membership_api.sync_members('[{\"external_id\": \"u3\"}]', 'delta', fixture.key('up-a:org'))->>'inserted'")" \
		"1" "$from: keys issued before the upgrade still work"
	psql -X -q -d postgres -c "DROP DATABASE $db" >/dev/null
done

psql -X -q -d postgres -c 'DROP DATABASE upgrade_fresh' >/dev/null
finish
