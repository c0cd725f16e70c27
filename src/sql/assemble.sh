#!/bin/sh
# Print an install or upgrade script of the membership extension.
#
#   assemble.sh "<releases, oldest first>" <version>        install script
#   assemble.sh "<releases, oldest first>" <from>--<to>     upgrade script
#
# The install script of a release is every piece of every release up to and
# including it; the upgrade script to a release is that release's pieces.
set -eu
releases=$1
target=$2
dir=$(dirname "$0")

case $target in
*--*)
	from=${target%%--*}
	to=${target##*--}
	prev=
	for r in $releases; do
		[ "$r" = "$to" ] && break
		prev=$r
	done
	if [ "$prev" != "$from" ]; then
		echo "assemble.sh: no single-step upgrade from $from to $to" >&2
		exit 1
	fi
	echo "-- membership upgrade from $from to $to (assembled from src/sql/$to/)"
	printf '%s\n' '\echo Use "ALTER EXTENSION membership UPDATE" to load this file. \quit'
	for f in "$dir/$to"/*.sql; do
		printf '\n-- %s\n' "${f#$dir/}"
		cat "$f"
	done
	;;
*)
	echo "-- membership $target install script (assembled from src/sql/)"
	printf '%s\n' '\echo Use "CREATE EXTENSION membership" to load this file. \quit'
	for r in $releases; do
		for f in "$dir/$r"/*.sql; do
			printf '\n-- %s\n' "${f#$dir/}"
			cat "$f"
		done
		[ "$r" = "$target" ] && exit 0
	done
	echo "assemble.sh: unknown release $target" >&2
	exit 1
	;;
esac
