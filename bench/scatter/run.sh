#!/usr/bin/env bash
# Fan-out overhead: scatter.Fanout vs a hand-written errgroup loop collecting into a slice, over
# no-op leaves at N = 1, 8, 64, 512, 4096, in the same benchmark binary. `go test -count` repeats
# the whole benchmark, so the implementations alternate; this prints the median wall ns/op, the
# median CPU ns/op (process user+system time per op: on a shared, loaded machine wall time is
# mostly waiting for a CPU) and allocs/op of each, and the ratios to errgroup.
#   bench/scatter/run.sh [COUNT] [BENCHTIME]      (defaults: 10 runs, 0.3s each)
# RESULTS=DIR: where the median CPU ns/op go as CSV for bench/plots.sh (default bench/results:
# scatter-fanout.bars.csv, a tile per N); RESULTS= for none.
# The Tail-at-Scale reproduction is a test:
#   go test ./scatter -run 'TailAtScale$' -v -tail.requests=20000            (synctest, fake time)
#   go test ./scatter -run TailAtScaleRealTime -v -tail.realtime=300 -tail.parallel=2   (real time)
# and PODBLOCKS_SCATTER_CSV=DIR makes TestTailAtScale write every request's latency in the four
# bimodal scenarios to DIR/scatter-tail.cdf.csv.
set -euo pipefail
cd "$(dirname "$0")/../.."
count=${1:-10}
benchtime=${2:-0.3s}
RESULTS=${RESULTS-bench/results}
csv=""
if [ -n "$RESULTS" ]; then
	mkdir -p "$RESULTS"
	csv="$RESULTS/scatter-fanout.bars.csv"
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "nproc=$(nproc) date=$(date -u +%FT%TZ) count=$count benchtime=$benchtime load=$(cut -d' ' -f1-3 /proc/loadavg)"
go test ./scatter -run '^$' -bench 'BenchmarkFanoutOverhead' -benchmem -count "$count" -benchtime "$benchtime" >"$out"
awk -v csv="$csv" -v title="scatter.Fanout vs errgroup, no-op leaves: median CPU ns/op of $count x $benchtime, $(date -u "+%F %H:%M UTC")" '
/^BenchmarkFanoutOverhead\// {
	split($1, p, "/"); n = p[2]; impl = p[3]; sub(/-[0-9]+$/, "", impl)
	key = n SUBSEP impl; c = ++cnt[key]; ns[key, c] = $3; cpu[key, c] = $5; al[key] = $9
	if (!(n in seen)) { seen[n] = 1; order[++no] = n }
}
function median(arr, key,   i, j, t, a, c) {
	c = cnt[key]
	for (i = 1; i <= c; i++) a[i] = arr[key, i]
	for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return (c % 2) ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
}
END {
	print "| N | errgroup ns/op | scatter ns/op | ratio | errgroup CPU ns/op | scatter CPU ns/op | CPU ratio | WithoutLatency CPU ratio | errgroup allocs | scatter allocs |"
	print "|---|---|---|---|---|---|---|---|---|---|"
	for (i = 1; i <= no; i++) {
		n = order[i]; e = n SUBSEP "errgroup"; s = n SUBSEP "scatter"; l = n SUBSEP "scatter-nolatency"
		en = median(ns, e); sn = median(ns, s); ec = median(cpu, e); sc = median(cpu, s); lc = median(cpu, l)
		label = n; sub(/N=/, "", label)
		printf "| %s | %.0f | %.0f | %.2fx | %.0f | %.0f | %.2fx | %.2fx | %s | %s |\n", label, en, sn, sn / en, ec, sc, sc / ec, lc / ec, al[e], al[s]
		rows = rows sprintf("N=%s,errgroup,%.0f\nN=%s,scatter,%.0f\n", label, ec, label, sc)
	}
	if (csv != "") {
		printf "# %s | | CPU ns/op\ngroup,series,value\n%s", title, rows > csv
		close(csv)
	}
}' "$out"
