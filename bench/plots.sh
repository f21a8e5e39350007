#!/usr/bin/env bash
# Renders bench/results/*.bars.csv, *.grouped.csv and *.cdf.csv (or the CSV files named as
# arguments) as an SVG beside each, for BENCHMARKS.md. The kind is the second extension:
#   NAME.bars.csv     rows group,series,value   one tile per group, a bar per series
#   NAME.grouped.csv  rows group,series,value   one chart, a cluster of bars per group
#   NAME.cdf.csv      rows series,value         CDF per series (log x) and a tail tile in nines
# The first line of a CSV may be a comment "# title | x label | y label".
set -euo pipefail
# Files named as arguments are taken relative to the caller's directory, before the cd below.
files=()
for f in "$@"; do
	[ -e "$f" ] || { echo "plots.sh: no such file: $f" >&2; exit 2; }
	files+=("$(realpath "$f")")
done
cd "$(dirname "$0")"
trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; s=${s%"${s##*[![:space:]]}"}; printf '%s' "$s"; }
[ ${#files[@]} -gt 0 ] || files=(results/*.csv)
go build -o /tmp/podblocks-plot.$$ ./plot
trap 'rm -f /tmp/podblocks-plot.$$' EXIT
for f in "${files[@]}"; do
	kind=${f%.csv}; kind=${kind##*.}
	extra=()
	case $kind in
	bars | grouped) ;;
	cdf) extra=(-tail) ;;
	*) echo "skipping $f: not NAME.bars.csv, NAME.grouped.csv or NAME.cdf.csv" >&2; continue ;;
	esac
	meta=$(head -1 "$f")
	title="" xl="" yl=""
	if [[ $meta == "#"* ]]; then
		IFS='|' read -r title xl yl <<<"${meta#\#}"
	fi
	grep -v '^#' "$f" > "$f.tmp"
	/tmp/podblocks-plot.$$ "$kind" -in "$f.tmp" -out "${f%.csv}.svg" -title "$(trim "$title")" \
		-x "$(trim "$xl")" -y "$(trim "$yl")" "${extra[@]}"
	rm -f "$f.tmp"
	echo "rendered ${f%.csv}.svg"
done
