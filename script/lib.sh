# shellcheck shell=bash
# Helpers shared by script/test, script/demo, script/bench and the
# integration tests.  Source it; it defines functions and variables only.
#
# mb_setup builds the extension, installs it into a private copy of the
# PostgreSQL tree in a fresh directory under /tmp (nothing is installed
# system-wide), and starts a throwaway cluster there; mb_teardown, run on
# exit whatever happens, stops every cluster and helper process it started
# and removes the directory.
#
# The cluster runs as Debian's "postgres" user when the scripts run as root
# (PostgreSQL refuses to run as root), listens on a Unix socket only, and
# preloads membership and pg_cron.

MB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
MB_PORT=5432

# Run a command as the user the cluster runs as.
as_postgres() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

mb_log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Seconds since a "date +%s%3N" timestamp, with one decimal.
mb_elapsed() {
	local ms=$(($(date +%s%3N) - $1))
	printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}

mb_build() {
	mb_log "building the extension"
	make -C "$MB_ROOT" -s -j2 PG_CONFIG="$PG_CONFIG" >/dev/null
}

# Symlink every entry of directory $1 that directory $2 lacks, descending
# into directories that exist in both.
mb_link_missing() {
	local src=$1 dst=$2 entry name
	mkdir -p "$dst"
	for entry in "$src"/*; do
		name=$(basename "$entry")
		if [ -d "$dst/$name" ] && [ ! -L "$dst/$name" ] && [ -d "$entry" ]; then
			mb_link_missing "$entry" "$dst/$name"
		elif [ ! -e "$dst/$name" ]; then
			ln -s "$entry" "$dst/$name"
		fi
	done
}

# Install the extension into $MB_WORK/pg, a private PostgreSQL tree: real
# copies of the server binaries (PostgreSQL finds its share and lib
# directories relative to where the binary really is) beside symlinks to
# everything else the system has.
mb_install_tree() {
	local bindir sharedir pkglibdir
	bindir=$("$PG_CONFIG" --bindir)
	sharedir=$("$PG_CONFIG" --sharedir)
	pkglibdir=$("$PG_CONFIG" --pkglibdir)
	make -C "$MB_ROOT" -s install DESTDIR="$MB_WORK/pg" PG_CONFIG="$PG_CONFIG" >/dev/null
	mkdir -p "$MB_WORK/pg$bindir"
	cp "$bindir/postgres" "$bindir/initdb" "$bindir/pg_ctl" "$MB_WORK/pg$bindir/"
	mb_link_missing "$sharedir" "$MB_WORK/pg$sharedir"
	mb_link_missing "$pkglibdir" "$MB_WORK/pg$pkglibdir"
	chmod -R a+rX "$MB_WORK/pg"
	MB_BIN=$MB_WORK/pg$bindir
	export MB_BIN
}

# mb_cluster_init NAME [postgresql.conf lines...]: a new cluster in
# $MB_WORK/NAME, its socket in the same directory.
mb_cluster_init() {
	local name=$1 dir=$MB_WORK/$1
	shift
	mkdir -p "$dir"
	chown postgres: "$dir" 2>/dev/null || true
	as_postgres "$MB_BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 \
		--locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; return 1; }
	{
		echo "listen_addresses = ''"
		echo "port = $MB_PORT"
		echo "unix_socket_directories = '$dir'"
		echo "shared_preload_libraries = 'membership,pg_cron'"
		echo "cron.database_name = 'membership'"
		echo "max_connections = 200"
		echo "shared_buffers = 512MB"
		echo "max_worker_processes = 32"
		echo "lc_messages = 'C'"
		echo "timezone = 'UTC'"
		echo "datestyle = 'iso, ymd'"
		echo "log_line_prefix = '%m [%p] %q%u@%d '"
		for line in "$@"; do echo "$line"; done
	} | as_postgres tee -a "$dir/data/postgresql.conf" >/dev/null
}

mb_cluster_start() {
	local dir=$MB_WORK/$1
	as_postgres "$MB_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
		{ tail -n 30 "$dir/server.log" >&2; return 1; }
}

mb_cluster_stop() {
	local dir=$MB_WORK/$1
	[ -f "$dir/data/postmaster.pid" ] || return 0
	as_postgres "$MB_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
		as_postgres "$MB_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
}

# The postmaster's pid, for crash tests.
mb_cluster_pid() {
	head -n 1 "$MB_WORK/$1/data/postmaster.pid"
}

# Point libpq at a cluster.
mb_use_cluster() {
	export PGHOST=$MB_WORK/$1 PGPORT=$MB_PORT PGUSER=postgres
}

# Remember a helper process (mock server, load generator) to stop on exit.
mb_track_pid() { echo "$1" >>"$MB_WORK/pids"; }

mb_teardown() {
	local status=$?
	[ -n "${MB_WORK:-}" ] && [ -d "$MB_WORK" ] || return $status
	if [ -f "$MB_WORK/pids" ]; then
		while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$MB_WORK/pids"
	fi
	for dir in "$MB_WORK"/*/data; do
		[ -d "$dir" ] && mb_cluster_stop "$(basename "$(dirname "$dir")")"
	done
	if [ -n "${MB_KEEP:-}" ]; then
		mb_log "kept $MB_WORK"
	else
		rm -rf "$MB_WORK"
	fi
	return $status
}

# Start the mock FCM, OAuth and APNs servers (test/mock/push_mock.js) on
# 127.0.0.1: a throwaway CA and a server certificate for 127.0.0.1, the
# test FCM service account (RSA) and APNs key (P-256) are made with the
# openssl CLI in $MB_WORK/push.  Sets MB_PUSH_URL (TLS, HTTP/2),
# MB_PUSH_CONTROL (plain HTTP: /counts, /reset, ...) and MB_PUSH_DIR.
mb_push_mocks_start() {
	local dir=$MB_WORK/push i
	mkdir -p "$dir"
	(
		cd "$dir" || exit 1
		openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=membership test CA' \
			-keyout ca.key -out ca.crt 2>/dev/null &&
			openssl req -newkey rsa:2048 -nodes -subj '/CN=127.0.0.1' -keyout server.key -out server.csr 2>/dev/null &&
			printf 'subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n' >server.ext &&
			openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
				-extfile server.ext -out server.crt 2>/dev/null &&
			openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out fcm_sa.key 2>/dev/null &&
			openssl pkey -in fcm_sa.key -pubout -out fcm_sa.pub 2>/dev/null &&
			openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out apns.p8 2>/dev/null &&
			openssl pkey -in apns.p8 -pubout -out apns.pub 2>/dev/null
	) || { mb_log "could not make the mock servers' keys"; return 1; }
	chmod a+r "$dir"/*
	node "$MB_ROOT/test/mock/push_mock.js" "$dir" >"$dir/mock.log" 2>&1 &
	mb_track_pid $!
	for i in $(seq 1 100); do
		[ -f "$dir/port" ] && break
		sleep 0.1
	done
	[ -f "$dir/port" ] || { cat "$dir/mock.log" >&2; mb_log "the push mock servers did not start"; return 1; }
	MB_PUSH_DIR=$dir
	MB_PUSH_URL=https://127.0.0.1:$(cat "$dir/port")
	MB_PUSH_CONTROL=http://127.0.0.1:$(cat "$dir/control_port")
	export MB_PUSH_DIR MB_PUSH_URL MB_PUSH_CONTROL
}

# postgresql.conf lines pointing the push worker at the mocks.
mb_push_settings() {
	echo "membership.push_fcm_url = '$MB_PUSH_URL'"
	echo "membership.push_apns_url = '$MB_PUSH_URL'"
	echo "membership.push_apns_sandbox_url = '$MB_PUSH_URL'"
	echo "membership.push_ca_file = '$MB_PUSH_DIR/ca.crt'"
}

# Build, install privately and start the main cluster with a "membership"
# database holding the extension (PGDATABASE points at it).  Cleans up on
# exit.
mb_setup() {
	"$MB_ROOT/script/bootstrap"
	mb_build
	# a fresh directory: mkdir fails rather than reuse one that exists
	MB_WORK=/tmp/membership.$$.$RANDOM
	mkdir -m 755 "$MB_WORK"
	export MB_WORK
	trap mb_teardown EXIT
	trap 'exit 130' INT TERM
	mb_install_tree
	mb_push_mocks_start
	mb_log "starting a throwaway cluster in $MB_WORK"
	mb_cluster_init main "$(mb_push_settings)" "$@"
	mb_cluster_start main
	mb_use_cluster main
	psql -q -X -v ON_ERROR_STOP=1 -d postgres -c 'CREATE DATABASE membership' >/dev/null
	export PGDATABASE=membership
	psql -q -X -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION membership' >/dev/null
}

# Load the realistic data set (bench/dataset.sql) into database $1 (default
# $PGDATABASE): organisations, providers and keys, then each organisation's
# members by one full sync, with progress.
mb_load_dataset() {
	local db=${1:-$PGDATABASE} slug size start
	psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$MB_ROOT/bench/dataset.sql" -c 'SELECT dataset.create_tenants()' >/dev/null ||
		return 1
	mb_log "data set: 9 organisations, $(psql -X -At -d "$db" -c 'SELECT count(*) FROM dataset.providers') providers, $(psql -X -At -d "$db" -c 'SELECT count(*) FROM dataset.keys') API keys"
	while read -r slug size; do
		start=$(date +%s%3N)
		psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" \
			-c "SELECT membership_api.sync_members(dataset.member_list('$slug'), 'full', dataset.org_key('$slug'))" >/dev/null ||
			return 1
		mb_log "data set: $slug: $size members synced in $(mb_elapsed "$start") s"
	done < <(psql -X -At -F ' ' -d "$db" -c 'SELECT slug, size FROM dataset.organisations ORDER BY size DESC')
	psql -X -q -d "$db" -c 'VACUUM ANALYZE' >/dev/null
}

# mb_pgbench CLIENTS SECONDS SCRIPT [pgbench options...]: run a pgbench
# script with prepared statements over the Unix socket, one thread per
# client, and print "tps p99_ms".
mb_pgbench() {
	local clients=$1 secs=$2 script=$3 dir tps p99
	shift 3
	dir=$(mktemp -d -p "$MB_WORK")
	(cd "$dir" && pgbench -n -M prepared -c "$clients" -j "$clients" -T "$secs" -l \
		-f "$script" "$@" >out.txt 2>&1) || { cat "$dir/out.txt" >&2; return 1; }
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$dir/out.txt")
	p99=$(cat "$dir"/pgbench_log.* | awk '{ print $3 }' | sort -n |
		awk '{ a[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.3f", a[i] / 1000 }')
	rm -rf "$dir"
	printf '%.0f %s\n' "$tps" "$p99"
}

# mb_sql_ms SQL: milliseconds one statement takes, measured inside the
# server, in a session of its own.
mb_sql_ms() {
	psql -X -q -At -v ON_ERROR_STOP=1 <<SQL | tail -n 1
SELECT clock_timestamp() AS t0 \gset
$1;
SELECT round(extract(epoch FROM clock_timestamp() - :'t0') * 1000);
SQL
}

# mb_median: the median of the numbers on standard input, one a line.
mb_median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# A ratio of two numbers, two decimals.
mb_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
