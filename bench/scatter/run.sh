#!/usr/bin/env bash
# Fan-out overhead: scatter.Fanout vs a hand-written errgroup loop collecting into a slice, over
# no-op leaves at N = 1, 8, 64, 512, 4096, in the same benchmark binary.
#   bench/scatter/run.sh [ROUNDS] [BENCHTIME]      (defaults: 10 rounds, 0.3s each)
# `go test -count` would run each sub-benchmark ROUNDS times back to back (errgroup ten times,
# then scatter ten times), so a load change between the two blocks would read as a difference of
# the code. Instead this builds the test binary once and runs it ROUNDS times, each round running
# every implementation once per N, in reverse order every other round (-fanout.reverse). It prints
# the median wall ns/op, the ratio of the medians to errgroup's with the range of the per-round
# ratios, the median CPU ns/op ratio (process user+system time per op, getrusage, GC included)
# and allocs/op. Pairs: errgroup vs scatter (and scatter WithoutLatency, and with a registerer)
# on context.Background(); errgroup-cancelable vs scatter-cancelable on a cancelable context.
# RESULTS=DIR: where the median ns/op go as CSV for bench/plots.sh (default bench/results:
# scatter-fanout.bars.csv, a tile per N); RESULTS= for none. RAW=FILE keeps the raw output.
# The Tail-at-Scale reproduction is a test:
#   go test ./scatter -run 'TailAtScale$' -v -tail.requests=20000            (synctest, fake time)
#   go test ./scatter -run TailAtScaleRealTime -v -tail.realtime=300 -tail.parallel=2   (real time)
# and PODBLOCKS_SCATTER_CSV=DIR makes TestTailAtScale write every request's latency in the four
# bimodal scenarios to DIR/scatter-tail.cdf.csv.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-10}
benchtime=${2:-0.3s}
RESULTS=${RESULTS-bench/results}
csv=""
if [ -n "$RESULTS" ]; then
	mkdir -p "$RESULTS"
	csv="$RESULTS/scatter-fanout.bars.csv"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=${RAW:-$tmp/out}
: >"$out"
go test -c -o "$tmp/scatter.test" ./scatter
echo "nproc=$(nproc) date=$(date -u +%FT%TZ) rounds=$rounds benchtime=$benchtime load=$(cut -d' ' -f1-3 /proc/loadavg)"
# cpu line of /proc/stat: user nice system idle iowait irq softirq steal ...
read -r _ u0 n0 s0 i0 w0 q0 sq0 st0 _ </proc/stat
for r in $(seq 1 "$rounds"); do
	rev=false
	if [ $((r % 2)) -eq 0 ]; then rev=true; fi
	echo "round $r" >>"$out"
	"$tmp/scatter.test" -test.run '^$' -test.bench '^BenchmarkFanoutOverhead$' -test.benchmem -test.count 1 \
		-test.benchtime "$benchtime" -fanout.reverse="$rev" >>"$out"
done
read -r _ u1 n1 s1 i1 w1 q1 sq1 st1 _ </proc/stat
all=$(((u1 + n1 + s1 + i1 + w1 + q1 + sq1 + st1) - (u0 + n0 + s0 + i0 + w0 + q0 + sq0 + st0)))
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg); CPU time stolen by the hypervisor during the rounds: $((100 * (st1 - st0) / (all > 0 ? all : 1)))%"
awk -v csv="$csv" -v title="scatter.Fanout vs errgroup, no-op leaves: median ns/op of $rounds rounds x $benchtime, $(date -u "+%F %H:%M UTC")" '
/^round / { r = $2; if (r > nr) nr = r; next }
/^BenchmarkFanoutOverhead\// {
	split($1, p, "/"); n = p[2]; impl = p[3]; sub(/-[0-9]+$/, "", impl)
	key = n SUBSEP impl; c = ++cnt[key]; ns[key, c] = $3; cpu[key, c] = $5; al[key] = $9; byround[key, r] = $3
	if (!(n in seen)) { seen[n] = 1; order[++no] = n }
}
function median(arr, key,   i, j, t, a, c) {
	c = cnt[key]
	for (i = 1; i <= c; i++) a[i] = arr[key, i]
	for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return (c % 2) ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
}
# range of the per-round ratios of impl s to impl e, as "lo-hi"
function span(s, e,   i, q, lo, hi) {
	lo = ""; hi = ""
	for (i = 1; i <= nr; i++) {
		if (!((s, i) in byround) || !((e, i) in byround)) continue
		q = byround[s, i] / byround[e, i]
		if (lo == "" || q < lo) lo = q
		if (hi == "" || q > hi) hi = q
	}
	return sprintf("%.2f-%.2f", lo, hi)
}
function ratio(arr, s, e) { return sprintf("%.2fx", median(arr, s) / median(arr, e)) }
END {
	print "| N | errgroup ns/op | scatter ns/op | ratio (rounds) | CPU ratio | `WithoutLatency` | registered | errgroup, cancelable ctx | scatter, cancelable ctx | ratio (rounds) | CPU ratio | allocs/op errgroup / scatter / cancelable: errgroup / scatter |"
	print "|---|---|---|---|---|---|---|---|---|---|---|---|"
	for (i = 1; i <= no; i++) {
		n = order[i]; e = n SUBSEP "errgroup"; s = n SUBSEP "scatter"; l = n SUBSEP "scatter-nolatency"; g = n SUBSEP "scatter-registered"
		ec = n SUBSEP "errgroup-cancelable"; sc = n SUBSEP "scatter-cancelable"
		label = n; sub(/N=/, "", label)
		printf "| %s | %.0f | %.0f | %s (%s) | %s | %s | %s | %.0f | %.0f | %s (%s) | %s | %s / %s / %s / %s |\n", label,
			median(ns, e), median(ns, s), ratio(ns, s, e), span(s, e), ratio(cpu, s, e), ratio(ns, l, e), ratio(ns, g, e),
			median(ns, ec), median(ns, sc), ratio(ns, sc, ec), span(sc, ec), ratio(cpu, sc, ec), al[e], al[s], al[ec], al[sc]
		rows = rows sprintf("N=%s,errgroup,%.0f\nN=%s,scatter,%.0f\nN=%s,errgroup (cancelable ctx),%.0f\nN=%s,scatter (cancelable ctx),%.0f\n",
			label, median(ns, e), label, median(ns, s), label, median(ns, ec), label, median(ns, sc))
	}
	if (csv != "") {
		printf "# %s | | ns/op\ngroup,series,value\n%s", title, rows > csv
		close(csv)
	}
}' "$out"
