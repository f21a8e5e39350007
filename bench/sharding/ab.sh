#!/usr/bin/env bash
# A/B of examples/ambassador builds against nutcracker on two redis shards, with the proxies' CPU
# per request: nutcracker and each BIN (default GOMAXPROCS, or GMP=n) alternate, every other round
# in the reverse order; each test (TESTS, default set,get) runs redis-benchmark -c50 -P16 (and -P1
# with P1RUN=1) per peer, and the proxy's utime+stime (/proc/PID/stat) over the run gives its CPU
# per request, steadier than the rates on a shared machine. Prints per test and peer the median
# rate, p50, CPU per request (every round's), the two redis-servers' and redis-benchmark's CPU per
# request during that peer's runs (what the proxy's batching costs the others), and every round's
# ratio to nutcracker. A BIN may be a script that execs a build (e.g. with GOMAXPROCS=1 set), so
# that one run compares the same build under two settings.
#
# Usage: bench/sharding/ab.sh ROUNDS BIN...    (env: N16 N1 TESTS P1RUN GMP AA DIRECT PIN)
#   AA=1 adds a second nutcracker and DIRECT=1 a lone redis-server (see peers.sh): at -P1 they show
#   the spread of identical peers' per-round ratios and redis-benchmark's own ceiling.
#   Build each BIN from a git archive: (git archive C | tar -x -C /tmp/t) && go build ./examples/ambassador
set -uo pipefail
ROUNDS=$1; shift; bins=("$@")
N16=${N16:-1000000}; N1=${N1:-200000}; TESTS=${TESTS:-set,get}; GMP=${GMP:-}
. "$(dirname "$0")/peers.sh"
echo "start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg) tests=$TESTS N16=$N16 P1=${P1RUN:-0} GMP=${GMP:-default} PIN=${PIN:-0}"
res=$work/res
rcpu() { cat /proc/${rpids[0]}/stat /proc/${rpids[1]}/stat | awk '{s+=$14+$15} END{print s}'; }
for r in $(seq $ROUNDS); do
  order=("${names[@]}"); [ $((r%2)) -eq 0 ] && order=($(printf '%s\n' "${names[@]}" | tac))
  pipes=16; [ "${P1RUN:-0}" = 1 ] && pipes="16 1"
  for pipe in $pipes; do
    n=$N16; [ $pipe = 1 ] && n=$N1
    for t in ${TESTS//,/ }; do
    for nm in "${order[@]}"; do
      c0=$(awk '{print $14+$15}' /proc/${ppid[$nm]}/stat); rc0=$(rcpu)
      "${pin_gen[@]}" /usr/bin/time -f "%U %S" -o $work/bt redis-benchmark -h 127.0.0.1 -p ${port[$nm]} -c 50 -t $t -P $pipe -n $n --csv 2>/dev/null |
        awk -F'","' -v name=$nm -v pipe=$pipe -v r=$r 'NR>1 { t=$1; gsub(/"/,"",t); printf "%s %s %s %s %s %s ", r, name, "P" pipe, tolower(t), $2, $5 }' >> $res
      c1=$(awk '{print $14+$15}' /proc/${ppid[$nm]}/stat); rc1=$(rcpu)
      echo "$(( (c1-c0)*10000 )) $(( (rc1-rc0)*10000 )) $(cat $work/bt) $n" | awk '{printf "%.3f %.3f %.3f\n", $1/$5, $2/$5, ($3+$4)*1e6/$5}' >> $res
    done
    done
  done
done
python3 - $res "${names[@]}" <<'PY'
import sys, collections, statistics
rows=collections.defaultdict(dict)
for l in open(sys.argv[1]):
    r,name,pipe,t,rate,p50,cpu,rc,bc=l.split(); rows[(pipe,t)].setdefault(name,[]).append((float(rate),float(p50),float(cpu),float(rc),float(bc)))
names=sys.argv[2:]
for key in sorted(rows):
    d=rows[key]; nc=d.get('nutcracker',[])
    print(key[0],key[1])
    for nm in names:
        v=d.get(nm,[])
        if not v: continue
        rat=[a[0]/b[0] for a,b in zip(v,nc)]
        print(f"  {nm:<14} med {statistics.median(x[0] for x in v):>9.0f} p50 {statistics.median(x[1] for x in v):.3f} us/req {statistics.median(x[2] for x in v):.3f} [" + " ".join(f"{x[2]:.2f}" for x in v) + f"] redis {statistics.median(x[3] for x in v):.3f} bench {statistics.median(x[4] for x in v):.3f}  ratios "+" ".join(f"{x:.2f}" for x in rat)+f"  med {statistics.median(rat):.2f} min {min(rat):.2f}")
PY
