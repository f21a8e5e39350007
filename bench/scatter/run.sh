#!/usr/bin/env bash
# Fan-out overhead: scatter.Fanout vs a hand-written errgroup loop collecting into a slice, over
# no-op leaves at N = 1, 8, 64, 512, 4096, in the same benchmark binary. `go test -count` repeats
# the whole benchmark, so the implementations alternate; this prints the median wall ns/op, the
# median CPU ns/op (process user+system time per op: on a shared, loaded machine wall time is
# mostly waiting for a CPU) and allocs/op of each, and the ratios to errgroup.
#   bench/scatter/run.sh [COUNT] [BENCHTIME]      (defaults: 10 runs, 0.3s each)
# The Tail-at-Scale reproduction is a test:
#   go test ./scatter -run 'TailAtScale$' -v -tail.requests=20000            (synctest, fake time)
#   go test ./scatter -run TailAtScaleRealTime -v -tail.realtime=300 -tail.parallel=2   (real time)
set -euo pipefail
cd "$(dirname "$0")/../.."
count=${1:-10}
benchtime=${2:-0.3s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "nproc=$(nproc) date=$(date -u +%FT%TZ) count=$count benchtime=$benchtime load=$(cut -d' ' -f1-3 /proc/loadavg)"
go test ./scatter -run '^$' -bench 'BenchmarkFanoutOverhead' -benchmem -count "$count" -benchtime "$benchtime" >"$out"
awk '
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
	}
}' "$out"
