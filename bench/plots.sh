#!/usr/bin/env bash
# Renders every bench/results/*.bars.csv and *.cdf.csv as an SVG beside it, for BENCHMARKS.md.
# The first line of a CSV may be a comment "# title | x label | y label".
set -euo pipefail
cd "$(dirname "$0")"
for f in results/*.csv; do
	[ -e "$f" ] || continue
	kind=${f%.csv}; kind=${kind##*.}
	meta=$(head -1 "$f")
	title="" xl="" yl=""
	if [[ $meta == "#"* ]]; then
		IFS='|' read -r title xl yl <<<"${meta#\# }"
	fi
	grep -v '^#' "$f" > "$f.tmp"
	go run ./plot "$kind" -in "$f.tmp" -out "${f%.csv}.svg" -title "$(echo $title)" -x "$(echo $xl)" -y "$(echo $yl)"
	rm -f "$f.tmp"
	echo "rendered ${f%.csv}.svg"
done
