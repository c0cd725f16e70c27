# shellcheck shell=bash
# A little TAP for the integration tests, which run under prove with the
# environment script/test sets up (PGHOST, PGPORT, PGUSER, MB_WORK, MB_BIN).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../script/lib.sh"
cd "$MB_ROOT"
export PGOPTIONS="-c client_min_messages=warning"

tap_count=0
tap_failed=0

plan() { echo "1..$1"; }

diag() { printf '# %s\n' "$@" >&2; }

pass() {
	tap_count=$((tap_count + 1))
	echo "ok $tap_count - $1"
}

fail() {
	tap_count=$((tap_count + 1))
	tap_failed=$((tap_failed + 1))
	echo "not ok $tap_count - $1"
}

# is GOT WANT DESCRIPTION
is() {
	if [ "$1" = "$2" ]; then
		pass "$3"
	else
		fail "$3"
		diag "     got: $1" "    want: $2"
	fi
}

# like GOT REGEX DESCRIPTION
like() {
	if [[ $1 =~ $2 ]]; then
		pass "$3"
	else
		fail "$3"
		diag "     got: $1" "    want: /$2/"
	fi
}

finish() { exit $((tap_failed > 0)); }

# q [psql options] SQL: run SQL, print unaligned tuples only.
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# A fresh database holding the extension and the shared test fixtures.
fresh_db() {
	psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
	psql -X -q -v ON_ERROR_STOP=1 -d "$1" -c 'CREATE EXTENSION membership' -f test/fixtures.sql >/dev/null
}

# The "membership" database, where the background workers run, with the
# shared test fixtures loaded once.
worker_db() {
	if [ "$(q -d membership -c "SELECT to_regnamespace('fixture') IS NOT NULL")" != t ]; then
		q -d membership -f test/fixtures.sql >/dev/null
	fi
}

# wait_for SECONDS SQL: poll until SQL returns "t"; false on timeout.
wait_for() {
	local deadline=$(($(date +%s) + $1))
	while [ "$(date +%s)" -le "$deadline" ]; do
		[ "$(q -d "${3:-membership}" -c "$2" 2>/dev/null)" = t ] && return 0
		sleep 0.2
	done
	return 1
}
