#!/bin/sh
# version.sh prints the Debian version of the tree: 1.2.0 at tag v1.2.0,
# 1.2.0+git3.gabc1234 three commits after it, and before any tag
# 0.0.0+git108.gabc1234 (the commit count keeps versions ordered).
# "+dirty" marks uncommitted changes.
set -eu
dirty=""
if ! git diff --quiet HEAD 2>/dev/null; then dirty="+dirty"; fi
if d=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
	case "$d" in
	*-*-g*) echo "$d" | sed -E "s/^v//; s/-([0-9]+)-g([0-9a-f]+)$/+git\1.g\2/; s/\$/$dirty/" ;;
	*) echo "${d#v}$dirty" ;;
	esac
else
	echo "0.0.0+git$(git rev-list --count HEAD 2>/dev/null || echo 0).g$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty"
fi
