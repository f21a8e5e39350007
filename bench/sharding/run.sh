#!/usr/bin/env bash
# Side-by-side benchmark of the sharding ambassador against nutcracker (twemproxy), both in front
# of the same two redis-server and two memcached shards on loopback.
#   redis:    redis-benchmark -c 50 -t get,set -P 16 (and -P 1)
#   memcache: memcaslap -T 1 -c 32
# Runs direct / nutcracker / podblocks (default GOMAXPROCS) / podblocks (GOMAXPROCS=1) alternating,
# ROUNDS times (every other round in the reverse order, so that no peer always runs right after
# another), and prints medians and ratios, then each round's ratio to nutcracker.
#
# Usage: bench/sharding/run.sh [ROUNDS]    (env: P16_N, P1_N, MC_SECS)
#   RESULTS=dir   where the median rates go as CSV for bench/plots.sh (default bench/results:
#                 sharding.bars.csv, one tile per load and test, a bar per peer); RESULTS= for none
#   RAW=file      append every round's figures to file and take the medians over all of its rounds,
#                 so that a long run can be split into calls (RAW=/tmp/r run.sh 3; RAW=/tmp/r run.sh 2)
#   BASE=bin      also run this examples/ambassador binary (an earlier build: the A of an A/B in the
#                 same run) as peer "podblocks-base", default GOMAXPROCS, in the same rotation
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}
# Each run lasts about 1-2 s: at the earlier 400000 / 60000 a -P1 run lasted 0.6 s, and one
# peer's run could fall in a neighbour's burst the next one missed (per-round ratios 0.72-1.23x).
P16_N=${P16_N:-1000000}
P1_N=${P1_N:-200000}
MC_SECS=${MC_SECS:-5}
RESULTS=${RESULTS-bench/results}

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-benchmark >/dev/null || need+=(redis-tools)
command -v memcached >/dev/null || need+=(memcached)
command -v memcaslap >/dev/null || need+=(libmemcached-tools)
[ -x /usr/sbin/nutcracker ] || command -v nutcracker >/dev/null || need+=(nutcracker)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NUTCRACKER=$(command -v nutcracker || echo /usr/sbin/nutcracker)

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/ambassador" ./examples/ambassador

# 16 distinct free ports, taken at once: one at a time, the kernel could hand out the same port
# twice (two pools on one listen address: the config is rejected).
read -r R1 R2 M1 M2 NR NM PR PM QR QM S1 S2 S3 BR BM S4 < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(16)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not up" >&2; exit 1; }

redis-server --port "$R1" --bind 127.0.0.1 --save '' --appendonly no --loglevel warning >/dev/null & pids+=($!)
redis-server --port "$R2" --bind 127.0.0.1 --save '' --appendonly no --loglevel warning >/dev/null & pids+=($!)
memcached -u nobody -l 127.0.0.1 -p "$M1" -U 0 -t 1 & pids+=($!)
memcached -u nobody -l 127.0.0.1 -p "$M2" -U 0 -t 1 & pids+=($!)
for p in $R1 $R2 $M1 $M2; do wait_port "$p"; done

conf() { # conf REDIS_PORT MEMCACHE_PORT
  cat <<YAML
redis:
  listen: 127.0.0.1:$1
  redis: true
  hash: fnv1a_64
  distribution: ketama
  timeout: 400
  servers:
   - 127.0.0.1:$R1:1
   - 127.0.0.1:$R2:1
memcache:
  listen: 127.0.0.1:$2
  hash: fnv1a_64
  distribution: ketama
  timeout: 400
  servers:
   - 127.0.0.1:$M1:1
   - 127.0.0.1:$M2:1
YAML
}
conf "$NR" "$NM" > "$work/nc.yml"; conf "$PR" "$PM" > "$work/pb.yml"; conf "$QR" "$QM" > "$work/pb1.yml"
"$NUTCRACKER" -c "$work/nc.yml" -s "$S1" -a 127.0.0.1 -o /dev/null & pids+=($!)
"$work/ambassador" -c "$work/pb.yml" -s "$S2" -o "$work/pb.log" & pids+=($!)
GOMAXPROCS=1 "$work/ambassador" -c "$work/pb1.yml" -s "$S3" -o "$work/pb1.log" & pids+=($!)
for p in $NR $NM $PR $PM $QR $QM; do wait_port "$p"; done
if [ -n "${BASE:-}" ]; then
  conf "$BR" "$BM" > "$work/pbb.yml"
  "$BASE" -c "$work/pbb.yml" -s "$S4" -o "$work/pbb.log" & pids+=($!)
  for p in $BR $BM; do wait_port "$p"; done
fi

results=${RAW:-$work/results.txt}
touch "$results"
# redis_run NAME PORT PIPELINE N: appends "NAME P<pipe> get|set rps p50" lines.
redis_run() {
  { redis-benchmark -h 127.0.0.1 -p "$2" -c 50 -t get,set -P "$3" -n "$4" --csv 2>>"$work/errors" || echo "redis-benchmark $1 P$3 failed" >&2; } |
    awk -F'","' -v name="$1" -v pipe="$3" 'NR>1 { t=$1; gsub(/"/,"",t); print name, "P" pipe, tolower(t), $2, $5 }' >> "$results"
}
# mc_run NAME SERVERS: appends "NAME mc tps TPS 0".
mc_run() {
  local tps
  tps=$({ memcaslap -s "$2" -T 1 -c 32 -t "${MC_SECS}s" 2>>"$work/errors" || echo "memcaslap $1 failed" >&2; } | awk '/TPS:/ { for (i=1;i<=NF;i++) if ($i=="TPS:") v=$(i+1) } END { print v+0 }')
  echo "$1 mc tps $tps 0" >> "$results"
}

declare -A redis_port=([direct]=$R1 [nutcracker]=$NR [podblocks]=$PR [podblocks-gmp1]=$QR [podblocks-base]=$BR)
declare -A mc_servers=([direct]="127.0.0.1:$M1,127.0.0.1:$M2" [nutcracker]="127.0.0.1:$NM"
  [podblocks]="127.0.0.1:$PM" [podblocks-gmp1]="127.0.0.1:$QM" [podblocks-base]="127.0.0.1:$BM")
alive() { for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { echo "a peer (pid $p) died; stopping" >&2; exit 1; }; done; }
echo "nproc=$(nproc) date=$(date -u +%FT%TZ) rounds=$ROUNDS load=$(cut -d' ' -f1-3 /proc/loadavg)${BASE:+ base=$BASE}"
all=(direct nutcracker podblocks podblocks-gmp1)
[ -z "${BASE:-}" ] || all+=(podblocks-base)
for r in $(seq "$ROUNDS"); do
  alive
  echo "round $r/$ROUNDS"
  peers=("${all[@]}")
  [ $((r % 2)) -eq 1 ] || peers=($(printf '%s\n' "${all[@]}" | tac))
  for pipe in 16 1; do
    n=$P16_N; [ "$pipe" = 1 ] && n=$P1_N
    for peer in "${peers[@]}"; do redis_run "$peer" "${redis_port[$peer]}" "$pipe" "$n"; done
  done
  for peer in "${peers[@]}"; do mc_run "$peer" "${mc_servers[$peer]}"; done
done

[ -z "$RESULTS" ] || mkdir -p "$RESULTS"
python3 - "$results" "$RESULTS" "$ROUNDS" "$P16_N" "$P1_N" "$MC_SECS" <<'PY'
import sys, statistics, collections, datetime
rows = collections.defaultdict(lambda: ([], []))
for line in open(sys.argv[1]):
    name, pipe, test, rate, p50 = line.split()
    rows[(pipe, test, name)][0].append(float(rate)); rows[(pipe, test, name)][1].append(float(p50))
med = {k: (statistics.median(v[0]), statistics.median(v[1])) for k, v in rows.items()}
nrounds = max(len(v[0]) for v in rows.values())
print(f"medians over {nrounds} rounds")
print(f"{'load':<12} {'test':<5} {'peer':<15} {'median rate':>12} {'p50 ms':>8} {'vs nutcracker':>14}")
for pipe, test in [("P16", "set"), ("P16", "get"), ("P1", "set"), ("P1", "get"), ("mc", "tps")]:
    base = med.get((pipe, test, "nutcracker"), (0, 0))[0]
    for name in ["direct", "nutcracker", "podblocks", "podblocks-gmp1", "podblocks-base"]:
        if (pipe, test, name) not in med: continue
        rate, p50 = med[(pipe, test, name)]
        ratio = f"{rate / base:.2f}x" if base else "-"
        print(f"{pipe:<12} {test:<5} {name:<15} {rate:>12.0f} {p50:>8.3f} {ratio:>14}")
print("per-round ratios to nutcracker (the rounds in the order they ran; p50 ms podblocks/nutcracker at -P16)")
for pipe, test in [("P16", "set"), ("P16", "get"), ("P1", "set"), ("P1", "get"), ("mc", "tps")]:
    nc = rows.get((pipe, test, "nutcracker"))
    for name in ["podblocks", "podblocks-gmp1", "podblocks-base"]:
        pb = rows.get((pipe, test, name))
        if not nc or not pb: continue
        pairs = list(zip(pb[0], nc[0], pb[1], nc[1]))
        line = " ".join(f"{a / b:.2f}" for a, b, _, _ in pairs)
        if pipe == "P16":
            line += "  p50 " + " ".join(f"{c:.2f}/{d:.2f}" for _, _, c, d in pairs)
        print(f"{pipe:<4} {test:<4} {name:<15} min {min(a / b for a, b, _, _ in pairs):.2f}x  {line}")
if sys.argv[2]:
    # The same medians as printed above, as text, for bench/plots.sh.
    p16, p1, secs = sys.argv[4:7]
    rounds = nrounds
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    tiles = {("P16", "set"): "redis -P16 SET req/s", ("P16", "get"): "redis -P16 GET req/s",
             ("P1", "set"): "redis -P1 SET req/s", ("P1", "get"): "redis -P1 GET req/s",
             ("mc", "tps"): "memcache (memcaslap) TPS"}
    with open(f"{sys.argv[2]}/sharding.bars.csv", "w") as f:
        f.write(f"# sharding ambassador vs nutcracker: medians of {rounds} rounds (redis-benchmark -c 50 -n {p16} / {p1}, memcaslap -c 32 {secs}s), {now} | |\n")
        f.write("group,series,value\n")
        for key, tile in tiles.items():
            for name in ["direct", "nutcracker", "podblocks", "podblocks-gmp1"]:
                if (key[0], key[1], name) in med:
                    f.write(f"{tile},{name},{med[(key[0], key[1], name)][0]:.0f}\n")
PY
