#!/usr/bin/env bash
# Fan-out overhead: scatter.Fanout vs a hand-written errgroup loop collecting into a slice, over
# no-op leaves at N = 1, 8, 64, 512, 4096, in the same benchmark binary. `go test -count` repeats
# the whole benchmark, so the two implementations alternate; this prints the median ns/op and
# allocs/op of each and their ratio.
#   bench/scatter/run.sh [COUNT] [BENCHTIME]      (defaults: 10 runs, 0.5s each)
# The Tail-at-Scale reproduction is a test: go test ./scatter -run TailAtScale -v -tail.requests=20000
set -euo pipefail
cd "$(dirname "$0")/../.."
count=${1:-10}
benchtime=${2:-0.5s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "nproc=$(nproc) date=$(date -u +%FT%TZ) count=$count benchtime=$benchtime"
go test ./scatter -run '^$' -bench 'BenchmarkFanoutOverhead' -benchmem -count "$count" -benchtime "$benchtime" | tee "$out" | grep -E '^Benchmark' >/dev/null
awk '
/^BenchmarkFanoutOverhead\// {
	split($1, p, "/"); n = p[2]; impl = p[3]; sub(/-[0-9]+$/, "", impl)
	key = n SUBSEP impl; c = ++cnt[key]; ns[key, c] = $3; al[key] = $7
	if (!(n in seen)) { seen[n] = 1; order[++no] = n }
}
function median(key,   i, j, t, a, c) {
	c = cnt[key]
	for (i = 1; i <= c; i++) a[i] = ns[key, i]
	for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return (c % 2) ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
}
END {
	printf "| N | errgroup ns/op | scatter ns/op | ratio | errgroup allocs/op | scatter allocs/op |\n|---|---|---|---|---|---|\n"
	for (i = 1; i <= no; i++) {
		n = order[i]; e = median(n SUBSEP "errgroup"); s = median(n SUBSEP "scatter")
		sub(/N=/, "", n)
		printf "| %s | %.0f | %.0f | %.2fx | %s | %s |\n", n, e, s, s / e, al[order[i] SUBSEP "errgroup"], al[order[i] SUBSEP "scatter"]
	}
}' "$out"
