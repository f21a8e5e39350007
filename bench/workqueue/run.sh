#!/usr/bin/env bash
# Work-queue comparisons, alternating runs, medians and ratios:
#   memory queue vs client-go's workqueue (1 producer, 8 workers, no-op handler)   goal >= 2x
#     (workers with Lease+Ack, the like-for-like of client-go's Get/Done and the goal's figure, and with
#     LeaseBatch(64)+AckBatch;
#     and, for what a Pool user gets, a workqueue.Pool of 8 workers with a no-op handler;
#     and two floors in the same rounds, not queues: the same flow over a bare Go channel, and over
#     a channel plus only the per-item work the Queue API implies (BenchmarkAPIFloor))
#   bolt queue, Add+Lease+Ack from 256 goroutines, durable                         goal >= 20k items/s
#   jetstream queue vs a raw nats.go Fetch+Ack loop, same embedded nats-server    goal >= 0.8x
#     (judged on the interleaved rounds in one process; the separate-process ratio is printed with
#     its A/A noise floor, raw against raw)
# The peers are Go modules (client-go in this nested module; nats-server embedded), so nothing is
# installed with apt-get. RUNS=N sets the number of alternating runs (default 5).
# The memory benchmarks run in both of client-go's modes, pinned with -test.cpu, alternating in
# every round: cpu 1 (producer and workers on one P: client-go's fast mode, which a busy machine
# gives it by chance) and cpu 2 (every hand-off may cross cores: its slow mode). Each mode gets its
# own medians and per-round ratios; the goal holds only if it holds in both.
# ONLY=LIST runs only the named queues' benchmarks, a comma-separated subset of memory,bolt,jetstream
# (default all three); RESULTS is then not written, since its chart needs all three.
# RESULTS=DIR: where the medians go as CSV for bench/plots.sh (default bench/results:
# workqueue.bars.csv, a tile per queue, podblocks beside its baseline); RESULTS= for none.
set -euo pipefail
cd "$(dirname "$0")"
runs=${RUNS:-5}
RESULTS=${RESULTS-$PWD/../results}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

only=${ONLY:-memory,bolt,jetstream}
for q in ${only//,/ }; do
	case $q in
	memory | bolt | jetstream) ;;
	*) echo "ONLY: unknown queue $q (want a comma-separated subset of memory,bolt,jetstream)" >&2 && exit 2 ;;
	esac
done
[ "$only" = memory,bolt,jetstream ] || RESULTS=
# want Q: whether queue Q's benchmarks run.
want() { [[ ",$only," == *",$1,"* ]]; }
if want memory; then go test -c -o "$tmp/mem.test" .; fi
if want bolt; then (cd ../.. && go test -c -o "$tmp/bolt.test" ./workqueue/bolt); fi
if want jetstream; then (cd ../.. && go test -c -o "$tmp/js.test" ./workqueue/jetstream); fi

# bench BIN NAME BENCHTIME [ARGS...]: prints the items/s of one run of benchmark NAME.
bench() {
	local bin=$1 name=$2 benchtime=$3
	shift 3
	(cd "$tmp" && "./$bin" -test.run '^$' -test.bench "^$name\$" -test.benchtime "$benchtime" -test.benchmem "$@") |
		awk '/items\/s/ { for (i = 1; i <= NF; i++) if ($(i) == "items/s") print $(i-1) }'
}

declare -A results
add() { results[$1]="${results[$1]:-} $2"; }
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# memrounds I: the memory benchmarks of round I in both modes, the mode first in odd rounds
# alternating with the other, and within a mode podblocks and client-go alternating too.
memrounds() {
	local cpus="1 2"
	((i % 2)) || cpus="2 1"
	for c in $cpus; do
		if ((i % 2)); then
			add "memory$c" "$(bench mem.test BenchmarkPodblocksMemory 300000x -test.cpu "$c")"
			add "clientgo$c" "$(bench mem.test BenchmarkClientGo 300000x -test.cpu "$c")"
		else
			add "clientgo$c" "$(bench mem.test BenchmarkClientGo 300000x -test.cpu "$c")"
			add "memory$c" "$(bench mem.test BenchmarkPodblocksMemory 300000x -test.cpu "$c")"
		fi
		add "memorybatch$c" "$(bench mem.test BenchmarkPodblocksMemoryBatch 300000x -test.cpu "$c")"
		add "memorypool$c" "$(bench mem.test BenchmarkPodblocksPool 300000x -test.cpu "$c")"
		# The floors of this round and mode (not queues): a bare channel hand-off, and the same with
		# only the per-item work the Queue API implies (ID, *Item with token and deadline, parse).
		add "chanfloor$c" "$(bench mem.test BenchmarkChannelFloor 300000x -test.cpu "$c")"
		add "apifloor$c" "$(bench mem.test BenchmarkAPIFloor 300000x -test.cpu "$c")"
	done
}

for i in $(seq "$runs"); do
	echo "run $i/$runs" >&2
	if want memory; then memrounds; fi
	if want bolt; then
		add bolt "$(bench bolt.test BenchmarkBoltEnqueueAck 40000x)"
		add rawbolt "$(bench bolt.test BenchmarkRawBoltBatch 10000x)"
	fi
	want jetstream || continue
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
keys=
want memory && keys="memory1 memorybatch1 memorypool1 clientgo1 apifloor1 chanfloor1 memory2 memorybatch2 memorypool2 clientgo2 apifloor2 chanfloor2"
want bolt && keys="$keys bolt rawbolt"
want jetstream && keys="$keys jsbatch jsdefault jsraw"
for k in $keys; do
	printf '%-44s %14.0f   (runs:%s)\n' "$k" "$(median "${results[$k]}")" "${results[$k]}"
done
ratio() { awk -v a="$(median "${results[$1]}")" -v b="$(median "${results[$2]}")" 'BEGIN { printf "%.2f", a / b }'; }
# rounds A B: the ratio of A to B in each round (the benchmarks of one round run back to back).
rounds() { paste -d' ' <(tr ' ' '\n' <<<"${results[$1]}" | grep -v '^$') <(tr ' ' '\n' <<<"${results[$2]}" | grep -v '^$') |
	awk '{ printf " %.2fx", $1 / $2 }'; }
# met A B: how many rounds have A at 2x B or more.
met() { paste -d' ' <(tr ' ' '\n' <<<"${results[$1]}" | grep -v '^$') <(tr ' ' '\n' <<<"${results[$2]}" | grep -v '^$') |
	awk '$1 >= 2 * $2 { n++ } END { printf "%d of %d", n, NR }'; }
want memory && for c in 1 2; do
	echo
	echo "-test.cpu $c (client-go's $([ $c = 1 ] && echo fast || echo slow) mode):"
	echo "memory, Lease+Ack / client-go:           $(ratio memory$c clientgo$c)x   (goal >= 2x; rounds at 2x or more: $(met memory$c clientgo$c))"
	echo "memory, LeaseBatch+AckBatch / client-go: $(ratio memorybatch$c clientgo$c)x"
	echo "memory, Pool (Lease+Ack) / client-go:     $(ratio memorypool$c clientgo$c)x"
	echo "  per round, Lease+Ack / client-go:          $(rounds memory$c clientgo$c)"
	echo "  per round, LeaseBatch+AckBatch / client-go:$(rounds memorybatch$c clientgo$c)"
	echo "  per round, Pool / client-go:               $(rounds memorypool$c clientgo$c)"
	echo "floors (not queues; what 2x client-go means here):"
	echo "API floor / client-go:                   $(ratio apifloor$c clientgo$c)x   (rounds at 2x or more: $(met apifloor$c clientgo$c))"
	echo "channel floor / client-go:               $(ratio chanfloor$c clientgo$c)x"
	echo "Lease+Ack / API floor:                   $(ratio memory$c apifloor$c)x"
	echo "  per round, API floor / client-go:          $(rounds apifloor$c clientgo$c)"
	echo "  per round, Lease+Ack / API floor:          $(rounds memory$c apifloor$c)"
	# What 2x client-go leaves per item, beside what the API's own work takes: the time an item may
	# take at 2x (half of client-go's), the API floor's time less the channel floor's (the API's
	# per-item work without the hand-off), the channel floor's (a hand-off) and Lease+Ack's.
	echo "  per round, ns an item: 2x budget | API work (API floor - channel floor) | channel hand-off | Lease+Ack"
	paste -d' ' <(tr ' ' '\n' <<<"${results[clientgo$c]}" | grep -v '^$') <(tr ' ' '\n' <<<"${results[apifloor$c]}" | grep -v '^$') \
		<(tr ' ' '\n' <<<"${results[chanfloor$c]}" | grep -v '^$') <(tr ' ' '\n' <<<"${results[memory$c]}" | grep -v '^$') |
		awk '{ printf "    %4.0f | %4.0f | %4.0f | %4.0f\n", 1e9 / (2 * $1), 1e9 / $2 - 1e9 / $3, 1e9 / $3, 1e9 / $4 }'
done
if want bolt; then
	echo
	echo "bolt durable enqueue+ack:           $(median "${results[bolt]}") items/s   (goal >= 20000)"
	echo "bolt / raw bbolt DB.Batch:          $(ratio bolt rawbolt)x"
fi
want jetstream || exit 0
echo
echo "jetstream (batch 100, plain ack) / raw Fetch+Ack: $(ratio jsbatch jsraw)x"
echo "  per round:                                     $(rounds jsbatch jsraw)"
echo "  per round, raw / raw again (A/A, noise floor): $(rounds jsraw2 jsraw)"
echo "jetstream (defaults) / raw Fetch+Ack:             $(ratio jsdefault jsraw)x"
echo "jetstream interleaved rounds, queue/raw:          $(median "${results[jsinter]}")x   (goal >= 0.8x; runs:${results[jsinter]})"

if [ -n "$RESULTS" ]; then
	# The medians printed above (same rounding), for bench/plots.sh; the memory tiles in both modes.
	mkdir -p "$RESULTS"
	m() { printf '%.0f' "$(median "${results[$1]}")"; }
	{
		echo "# work queues vs a baseline: median items/s of $runs runs, $(date -u "+%F %H:%M UTC") | | items/s"
		echo "group,series,value"
		for c in 1 2; do
			echo "memory vs client-go (-test.cpu $c),podblocks,$(m memory$c)"
			echo "memory vs client-go (-test.cpu $c),baseline,$(m clientgo$c)"
			echo "memory vs client-go (-test.cpu $c),podblocks LeaseBatch+AckBatch,$(m memorybatch$c)"
			echo "memory vs client-go (-test.cpu $c),podblocks Pool,$(m memorypool$c)"
		done
		echo "bolt vs raw bbolt Batch,podblocks,$(m bolt)"
		echo "bolt vs raw bbolt Batch,baseline,$(m rawbolt)"
		echo "jetstream vs raw Fetch+Ack,podblocks,$(m jsbatch)"
		echo "jetstream vs raw Fetch+Ack,baseline,$(m jsraw)"
		echo "jetstream vs raw Fetch+Ack,podblocks jetstream defaults,$(m jsdefault)"
	} >"$RESULTS/workqueue.bars.csv"
fi
