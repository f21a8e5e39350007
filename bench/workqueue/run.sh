#!/usr/bin/env bash
# Work-queue comparisons, alternating runs, medians and ratios:
#   memory queue vs client-go's workqueue (1 producer, 8 workers, no-op handler)   goal >= 2x
#   bolt queue, Add+Lease+Ack from 256 goroutines, durable                         goal >= 20k items/s
#   jetstream queue vs a raw nats.go Fetch+Ack loop, same embedded nats-server    goal >= 0.8x
# The peers are Go modules (client-go in this nested module; nats-server embedded), so nothing is
# installed with apt-get. RUNS=N sets the number of alternating runs (default 5).
set -euo pipefail
cd "$(dirname "$0")"
runs=${RUNS:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

go test -c -o "$tmp/mem.test" .
(cd ../.. && go test -c -o "$tmp/bolt.test" ./workqueue/bolt && go test -c -o "$tmp/js.test" ./workqueue/jetstream)

# bench BIN NAME BENCHTIME: prints the items/s of one run of benchmark NAME.
bench() {
	(cd "$tmp" && "./$1" -test.run '^$' -test.bench "^$2\$" -test.benchtime "$3" -test.benchmem) |
		awk '/items\/s/ { for (i = 1; i <= NF; i++) if ($(i) == "items/s") print $(i-1) }'
}

declare -A results
add() { results[$1]="${results[$1]:-} $2"; }
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

for i in $(seq "$runs"); do
	echo "run $i/$runs" >&2
	add memory "$(bench mem.test BenchmarkPodblocksMemory 300000x)"
	add clientgo "$(bench mem.test BenchmarkClientGo 300000x)"
	add bolt "$(bench bolt.test BenchmarkBoltEnqueueAck 40000x)"
	add rawbolt "$(bench bolt.test BenchmarkRawBoltBatch 10000x)"
	add jsbatch "$(bench js.test BenchmarkQueueBatch 20000x)"
	add jsdefault "$(bench js.test BenchmarkQueueDefault 20000x)"
	add jsraw "$(bench js.test BenchmarkRawFetchAck 20000x)"
	# 20 interleaved rounds of 2,000 items in one process: the steadier jetstream ratio.
	add jsinter "$( (cd "$tmp" && ./js.test -test.run '^$' -test.bench '^BenchmarkInterleaved$' -test.benchtime 1x) |
		awk '/queue\/raw/ { for (i = 1; i <= NF; i++) if ($(i) == "queue/raw") print $(i-1) }')"
done

printf '%-44s %14s\n' benchmark 'median items/s'
for k in memory clientgo bolt rawbolt jsbatch jsdefault jsraw; do
	printf '%-44s %14.0f   (runs:%s)\n' "$k" "$(median "${results[$k]}")" "${results[$k]}"
done
ratio() { awk -v a="$(median "${results[$1]}")" -v b="$(median "${results[$2]}")" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "memory / client-go:                 $(ratio memory clientgo)x   (goal >= 2x)"
echo "bolt durable enqueue+ack:           $(median "${results[bolt]}") items/s   (goal >= 20000)"
echo "bolt / raw bbolt DB.Batch:          $(ratio bolt rawbolt)x"
echo "jetstream (batch 100, plain ack) / raw Fetch+Ack: $(ratio jsbatch jsraw)x   (goal >= 0.8x)"
echo "jetstream (defaults) / raw Fetch+Ack:             $(ratio jsdefault jsraw)x"
echo "jetstream interleaved rounds, queue/raw:          $(median "${results[jsinter]}")x   (runs:${results[jsinter]})"
