#!/usr/bin/env bash
# Work-queue comparisons, alternating runs, medians and ratios:
#   memory queue vs client-go's workqueue (1 producer, 8 workers, no-op handler)   goal >= 2x
#     (workers with Lease+Ack, the like-for-like of client-go's Get/Done and the goal's figure, and with
#     LeaseBatch(64)+AckBatch;
#     and, for what a Pool user gets, a workqueue.Pool of 8 workers with a no-op handler)
#   bolt queue, Add+Lease+Ack from 256 goroutines, durable                         goal >= 20k items/s
#   jetstream queue vs a raw nats.go Fetch+Ack loop, same embedded nats-server    goal >= 0.8x
#     (judged on the interleaved rounds in one process; the separate-process ratio is printed with
#     its A/A noise floor, raw against raw)
# The peers are Go modules (client-go in this nested module; nats-server embedded), so nothing is
# installed with apt-get. RUNS=N sets the number of alternating runs (default 5).
# RESULTS=DIR: where the medians go as CSV for bench/plots.sh (default bench/results:
# workqueue.bars.csv, a tile per queue, podblocks beside its baseline); RESULTS= for none.
set -euo pipefail
cd "$(dirname "$0")"
runs=${RUNS:-5}
RESULTS=${RESULTS-$PWD/../results}
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
	add memorybatch "$(bench mem.test BenchmarkPodblocksMemoryBatch 300000x)"
	add memorypool "$(bench mem.test BenchmarkPodblocksPool 300000x)"
	add bolt "$(bench bolt.test BenchmarkBoltEnqueueAck 40000x)"
	add rawbolt "$(bench bolt.test BenchmarkRawBoltBatch 10000x)"
	# jetstream: 100,000 items per run (about a second timed; 20,000 was too short), the queue and
	# the raw loop in turn first, and the raw loop once more (jsraw2: raw against raw, the noise floor
	# of a ratio of two separate processes); the defaults (acks confirmed, ~15k items/s) at 20,000.
	if ((i % 2)); then
		add jsbatch "$(bench js.test BenchmarkQueueBatch 100000x)"
		add jsraw "$(bench js.test BenchmarkRawFetchAck 100000x)"
		add jsraw2 "$(bench js.test BenchmarkRawFetchAck 100000x)"
	else
		add jsraw2 "$(bench js.test BenchmarkRawFetchAck 100000x)"
		add jsraw "$(bench js.test BenchmarkRawFetchAck 100000x)"
		add jsbatch "$(bench js.test BenchmarkQueueBatch 100000x)"
	fi
	add jsdefault "$(bench js.test BenchmarkQueueDefault 20000x)"
	# 20 interleaved rounds of 2,000 items in one process: the steadier jetstream ratio.
	add jsinter "$( (cd "$tmp" && ./js.test -test.run '^$' -test.bench '^BenchmarkInterleaved$' -test.benchtime 1x) |
		awk '/queue\/raw/ { for (i = 1; i <= NF; i++) if ($(i) == "queue/raw") print $(i-1) }')"
done

printf '%-44s %14s\n' benchmark 'median items/s'
for k in memory memorybatch memorypool clientgo bolt rawbolt jsbatch jsdefault jsraw; do
	printf '%-44s %14.0f   (runs:%s)\n' "$k" "$(median "${results[$k]}")" "${results[$k]}"
done
ratio() { awk -v a="$(median "${results[$1]}")" -v b="$(median "${results[$2]}")" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "memory, Lease+Ack / client-go:           $(ratio memory clientgo)x   (goal >= 2x)"
echo "memory, LeaseBatch+AckBatch / client-go: $(ratio memorybatch clientgo)x"
echo "memory, Pool (Lease+Ack) / client-go:     $(ratio memorypool clientgo)x"
# rounds A B: the ratio of A to B in each round (the benchmarks of one round run back to back).
rounds() { paste -d' ' <(tr ' ' '\n' <<<"${results[$1]}" | grep -v '^$') <(tr ' ' '\n' <<<"${results[$2]}" | grep -v '^$') |
	awk '{ printf " %.2fx", $1 / $2 }'; }
echo "  per round, LeaseBatch+AckBatch / client-go:$(rounds memorybatch clientgo)"
echo "  per round, Lease+Ack / client-go:          $(rounds memory clientgo)"
echo "  per round, Pool / client-go:               $(rounds memorypool clientgo)"
echo "bolt durable enqueue+ack:           $(median "${results[bolt]}") items/s   (goal >= 20000)"
echo "bolt / raw bbolt DB.Batch:          $(ratio bolt rawbolt)x"
echo "jetstream (batch 100, plain ack) / raw Fetch+Ack: $(ratio jsbatch jsraw)x"
echo "  per round:                                     $(rounds jsbatch jsraw)"
echo "  per round, raw / raw again (A/A, noise floor): $(rounds jsraw2 jsraw)"
echo "jetstream (defaults) / raw Fetch+Ack:             $(ratio jsdefault jsraw)x"
echo "jetstream interleaved rounds, queue/raw:          $(median "${results[jsinter]}")x   (goal >= 0.8x; runs:${results[jsinter]})"

if [ -n "$RESULTS" ]; then
	# The medians printed above (same rounding), for bench/plots.sh.
	mkdir -p "$RESULTS"
	m() { printf '%.0f' "$(median "${results[$1]}")"; }
	{
		echo "# work queues vs a baseline: median items/s of $runs runs, $(date -u "+%F %H:%M UTC") | | items/s"
		echo "group,series,value"
		echo "memory vs client-go,podblocks,$(m memory)"
		echo "memory vs client-go,baseline,$(m clientgo)"
		echo "memory vs client-go,podblocks LeaseBatch+AckBatch,$(m memorybatch)"
		echo "memory vs client-go,podblocks Pool,$(m memorypool)"
		echo "bolt vs raw bbolt Batch,podblocks,$(m bolt)"
		echo "bolt vs raw bbolt Batch,baseline,$(m rawbolt)"
		echo "jetstream vs raw Fetch+Ack,podblocks,$(m jsbatch)"
		echo "jetstream vs raw Fetch+Ack,baseline,$(m jsraw)"
		echo "jetstream vs raw Fetch+Ack,podblocks jetstream defaults,$(m jsdefault)"
	} >"$RESULTS/workqueue.bars.csv"
fi
