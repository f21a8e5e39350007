#!/usr/bin/env bash
# A/B of the memory queue: the current tree against an older revision, in the same hold, alternating.
# Each round runs, at -test.cpu 1 and 2: client-go, the old build, the new build and the two floors
# (BenchmarkAPIFloor, BenchmarkChannelFloor), the old/new order swapped every round, and prints one
# line per run: round cpu variant items/s ns/op. Then the medians and per-round ratios to client-go.
#
#   bench/workqueue/ab.sh REV [ROUNDS]      # e.g. bench/workqueue/ab.sh HEAD~1 10
set -euo pipefail
rev=${1:?usage: ab.sh REV [ROUNDS]}
rounds=${2:-10}
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/new.test" .
mkdir "$tmp/old"
(cd ../.. && git archive "$rev") | tar -x -C "$tmp/old"
(cd "$tmp/old/bench/workqueue" && go test -c -o "$tmp/old.test" .)

run() { # BIN BENCH CPU: items/s and ns/op of one run
	(cd "$tmp" && "./$1" -test.run '^$' -test.bench "^$2\$" -test.benchtime 300000x -test.cpu "$3") |
		awk '/items\/s/ { for (i = 1; i <= NF; i++) if ($(i) == "items/s") print $(i-1), $3 }'
}
for ((r = 1; r <= rounds; r++)); do
	order="old new"
	((r % 2)) || order="new old"
	for cpu in 1 2; do
		echo "$r $cpu client-go $(run new.test BenchmarkClientGo "$cpu")"
		for v in $order; do echo "$r $cpu $v $(run "$v.test" BenchmarkPodblocksMemory "$cpu")"; done
		echo "$r $cpu apifloor $(run new.test BenchmarkAPIFloor "$cpu")"
		echo "$r $cpu chanfloor $(run new.test BenchmarkChannelFloor "$cpu")"
	done
done | tee "$tmp/runs"
awk '
	{ v[$2 " " $3] = v[$2 " " $3] " " $4; r[$1 " " $2 " " $3] = $4; n = $1 > n ? $1 : n }
	END {
		for (c = 1; c <= 2; c++) for (i = 0; i < 2; i++) {
			name = i ? "new" : "old"; line = ""
			for (k = 1; k <= n; k++) line = line sprintf(" %.2f", r[k " " c " " name] / r[k " " c " client-go"])
			printf "cpu %d %s / client-go per round:%s\n", c, name, line
		}
	}' "$tmp/runs"
