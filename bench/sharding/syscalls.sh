#!/usr/bin/env bash
# Per-request cost of nutcracker and examples/ambassador builds on two redis shards: system calls
# (by kind), context switches and CPU time, counted with perf stat on each proxy process (and on
# the two redis-servers, whose reads show how well the proxy batches its writes to them) over a
# fixed number of requests (redis-benchmark -c50 -t T -P P -n N). Peers run one after the other,
# alternating in order every other round; the figures are divided by the requests of the run.
# redis-benchmark's own system calls, epoll_waits, context switches and CPU are counted too: a proxy
# that answers sooner or in smaller bursts makes the load generator work more per request.
#
# Usage: bench/sharding/syscalls.sh ROUNDS BIN...    (env: N16 N1 TESTS PIPES GMP AA DIRECT)
#   AA=1 and DIRECT=1 add peers.sh's reference peers; for direct, the redis columns count the two
#   shard servers, which it does not use, so they read about 0.
set -uo pipefail
ROUNDS=$1; shift; bins=("$@")
N16=${N16:-1000000}; N1=${N1:-200000}; TESTS=${TESTS:-set,get}; PIPES=${PIPES:-16 1}; GMP=${GMP:-}
. "$(dirname "$0")/peers.sh"
echo "start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg) tests=$TESTS pipes=$PIPES N16=$N16 N1=$N1"
sc=read,write,readv,writev,recvfrom,sendto,epoll_wait,epoll_pwait,epoll_ctl,futex,nanosleep,sched_yield,tgkill,getpid,rt_sigreturn,madvise,mmap
ev="raw_syscalls:sys_enter,context-switches,task-clock"
for s in ${sc//,/ }; do ev+=",syscalls:sys_enter_$s"; done
for r in $(seq $ROUNDS); do
  order=("${names[@]}"); [ $((r%2)) -eq 0 ] && order=($(printf '%s\n' "${names[@]}" | tac))
  for pipe in $PIPES; do
    n=$N16; [ $pipe = 1 ] && n=$N1
    for t in ${TESTS//,/ }; do
      for nm in "${order[@]}"; do
        perf stat -x, -e "$ev" -p ${ppid[$nm]} -o $work/p.txt & pp=$!
        perf stat -x, -e "raw_syscalls:sys_enter,syscalls:sys_enter_read,task-clock" -p ${rpids[0]},${rpids[1]} -o $work/r.txt & rp=$!
        sleep 0.3
        rate=$(perf stat -x, -e "raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,context-switches,task-clock" -o $work/b.txt \
          redis-benchmark -h 127.0.0.1 -p ${port[$nm]} -c 50 -t $t -P $pipe -n $n --csv 2>/dev/null | awk -F'","' 'NR>1{print $2}')
        kill -INT $pp $rp; wait $pp $rp 2>/dev/null
        python3 - $work/p.txt $work/r.txt $work/b.txt $n "$r $nm P$pipe $t $rate" >> $work/res <<'PY'
import sys
def load(f):
    d = {}
    for l in open(f):
        p = l.strip().split(",")
        if len(p) < 3 or l.startswith("#"): continue
        try: d[p[2].replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter", "syscalls")] = float(p[0])
        except ValueError: pass
    return d
p, r, b, n = load(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3]), float(sys.argv[4])
out = {k: v / n for k, v in p.items()}
out["task-clock"] = p.get("task-clock", 0) * 1000 / n  # ms -> us per request
out["redis-syscalls"] = r.get("syscalls", 0) / n
out["redis-read"] = r.get("read", 0) / n
out["redis-us"] = r.get("task-clock", 0) * 1000 / n
out["bench-syscalls"] = b.get("syscalls", 0) / n
out["bench-epoll_wait"] = b.get("epoll_wait", 0) / n
out["bench-cs"] = b.get("context-switches", 0) / n
out["bench-us"] = b.get("task-clock", 0) * 1000 / n
print(sys.argv[5], " ".join(f"{k}={v:.4f}" for k, v in sorted(out.items())))
PY
      done
    done
  done
done
cat $work/res
python3 - $work/res "${names[@]}" <<'PY'
import sys, collections, statistics
rows = collections.defaultdict(lambda: collections.defaultdict(list))
for l in open(sys.argv[1]):
    f = l.split()
    key = (f[2], f[3], f[1])
    rows[key]["rate"].append(float(f[4]))
    for kv in f[5:]:
        k, v = kv.split("="); rows[key][k].append(float(v))
cols = ["rate", "task-clock", "syscalls", "context-switches", "read", "write", "writev", "epoll_wait", "epoll_pwait", "epoll_ctl", "futex", "nanosleep", "sched_yield", "tgkill", "redis-syscalls", "redis-read", "redis-us", "bench-syscalls", "bench-epoll_wait", "bench-cs", "bench-us"]
print("medians per request (task-clock, redis-us: us of CPU)")
print("| load | test | peer | " + " | ".join(cols) + " |")
print("|" + "---|" * (len(cols) + 3))
for pipe, t in sorted({(k[0], k[1]) for k in rows}, key=lambda x: (x[0] != "P16", x[1])):
    for nm in sys.argv[2:]:
        d = rows.get((pipe, t, nm))
        if not d: continue
        print(f"| {pipe} | {t} | {nm} | " + " | ".join((f"{statistics.median(d[c]):.0f}" if c == "rate" else f"{statistics.median(d[c]):.3f}") if d.get(c) else "-" for c in cols) + " |")
PY
