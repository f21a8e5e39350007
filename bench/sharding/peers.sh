# Sourced by ab.sh and syscalls.sh: starts two redis-server shards, nutcracker and each BIN of
# bins (with GOMAXPROCS=$GMP when GMP is set) in front of them on loopback, and sets
#   work      a temporary directory, removed on exit with every process started here
#   rpids     the redis-servers' pids
#   names     nutcracker, then each BIN's base name; port[NAME] and ppid[NAME] its port and pid
# Needs bins (an array) and GMP set. Two more peers on request, to show how far apart identical
# peers land and where the load generator's own ceiling is:
#   AA=1      nutcracker2, a second nutcracker on the same config (an A/A of nutcracker)
#   DIRECT=1  direct, a third redis-server alone (no proxy, no sharding): redis-benchmark's
#             ceiling on this machine; its "proxy" CPU is that redis-server's
#   PIN=1     the load generator on CPU 0 alone, every server and proxy on CPU 1 (taskset): the
#             generator's own work no longer shares a core with what it measures; sets pin_gen
#             for the caller to put before redis-benchmark
work=$(mktemp -d); pids=()
pin_srv=(); pin_gen=()
if [ "${PIN:-0}" = 1 ]; then pin_srv=(taskset -c 1); pin_gen=(taskset -c 0); fi
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
read -r R1 R2 NR P0 P1 P2 P3 S0 S1 S2 S3 S4 NR2 S5 RD < <(python3 -c '
import socket
ss=[socket.socket() for _ in range(15)]
for s in ss: s.bind(("127.0.0.1",0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
ports=($P0 $P1 $P2 $P3); sports=($S1 $S2 $S3 $S4)
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not up" >&2; exit 1; }
"${pin_srv[@]}" redis-server --port $R1 --bind 127.0.0.1 --save '' --appendonly no --loglevel warning >/dev/null & pids+=($!); rpids=($!)
"${pin_srv[@]}" redis-server --port $R2 --bind 127.0.0.1 --save '' --appendonly no --loglevel warning >/dev/null & pids+=($!); rpids+=($!)
wait_port $R1; wait_port $R2
conf() { printf 'redis:\n  listen: 127.0.0.1:%s\n  redis: true\n  hash: fnv1a_64\n  distribution: ketama\n  timeout: 400\n  servers:\n   - 127.0.0.1:%s:1\n   - 127.0.0.1:%s:1\n' $1 $R1 $R2; }
conf $NR > $work/nc.yml
"${pin_srv[@]}" /usr/sbin/nutcracker -c $work/nc.yml -s $S0 -a 127.0.0.1 -o /dev/null & pids+=($!); ncpid=$!
declare -A port ppid
names=(nutcracker); port[nutcracker]=$NR; ppid[nutcracker]=$ncpid
if [ "${AA:-0}" = 1 ]; then
  conf $NR2 > $work/nc2.yml
  "${pin_srv[@]}" /usr/sbin/nutcracker -c $work/nc2.yml -s $S5 -a 127.0.0.1 -o /dev/null & pids+=($!)
  names+=(nutcracker2); port[nutcracker2]=$NR2; ppid[nutcracker2]=$!
fi
if [ "${DIRECT:-0}" = 1 ]; then
  "${pin_srv[@]}" redis-server --port $RD --bind 127.0.0.1 --save '' --appendonly no --loglevel warning >/dev/null & pids+=($!)
  names+=(direct); port[direct]=$RD; ppid[direct]=$!
fi
for i in "${!bins[@]}"; do
  conf ${ports[$i]} > $work/pb$i.yml
  "${pin_srv[@]}" env ${GMP:+GOMAXPROCS=$GMP} ${bins[$i]} -c $work/pb$i.yml -s ${sports[$i]} -o $work/pb$i.log & pids+=($!)
  nm=$(basename ${bins[$i]}); names+=($nm); port[$nm]=${ports[$i]}; ppid[$nm]=$!
done
for nm in "${names[@]}"; do wait_port ${port[$nm]}; done
