#!/usr/bin/env bash
# Every API function has an isolation test: each function of membership_api
# must be called in at least one test/pgtap/isolation*.sql suite, so a
# function added later without one fails here.
. "$(dirname "$0")/tap.bash"

mapfile -t functions < <(q -c "SELECT DISTINCT proname FROM pg_proc
                               WHERE pronamespace = 'membership_api'::regnamespace ORDER BY 1")
plan ${#functions[@]}
for f in "${functions[@]}"; do
	files=$(grep -l "membership_api\.$f(" test/pgtap/isolation*.sql 2>/dev/null | tr '\n' ' ')
	if [ -n "$files" ]; then
		pass "membership_api.$f has isolation tests ($files)"
	else
		fail "membership_api.$f has no isolation test in test/pgtap/isolation*.sql"
	fi
done
finish
