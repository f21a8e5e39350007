#!/usr/bin/env bash
# Side-by-side: wrk -t1 -c64 against two nginx backends, directly, through HAProxy (nbthread 1) and
# through podblocks' ambassador (GOMAXPROCS=1 and default), for HTTP (mode http / HTTPProxy) and
# TCP (mode tcp / TCPProxy). Runs alternate; prints medians and ratios.
#
#   bench/ambassador/run.sh                 # RUNS=5 DURATION=10s
#   RUNS=3 DURATION=5s bench/ambassador/run.sh
#   GOFLAGS_EXTRA="-overlay x.json"  extra go build flags
#   RESULTS=dir                             where the medians go as CSV for bench/plots.sh
#                                           (default bench/results: ambassador-http.bars.csv, ambassador-tcp.bars.csv)
#   ONLY=tcp | ONLY=http                    one kind only: its HAProxy mode and podblocks proxies, no direct
#                                           target, no CSV written
#   BASE=path/to/ambassador                 also run this (older) build as base-<kind> targets beside the
#                                           current one, for A/B in the same hold (no CSV written)
#
# Everything runs as this user's processes on 127.0.0.1 high ports with configs in a temp dir.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-5}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
RESULTS=${RESULTS:-bench/results}
ONLY=${ONLY:-}
case "$ONLY" in "" | tcp | http) ;; *) echo "ONLY must be tcp or http" >&2; exit 1 ;; esac

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need haproxy || ! need wrk; then
	if [ "$(id -u)" = 0 ]; then
		apt-get install -y -qq --no-install-recommends nginx haproxy wrk >/dev/null
	else
		echo "need nginx, haproxy and wrk (apt-get install nginx haproxy wrk)" >&2
		exit 1
	fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# freeport picks an unused high port.
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
waitport() {
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "port $1 did not open" >&2; cat "$tmp"/*/stderr "$tmp"/*/error.log "$tmp"/*.log 2>/dev/null >&2
	exit 1
}

# --- two nginx backends, one worker each
N1=$(freeport); N2=$(freeport)
for i in 1 2; do
	port=$([ $i = 1 ] && echo "$N1" || echo "$N2")
	d="$tmp/nginx$i"; mkdir -p "$d"
	cat >"$d/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $d/body; proxy_temp_path $d/proxy; fastcgi_temp_path $d/fcgi;
	uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi;
	keepalive_requests 10000000;
	keepalive_timeout 120s;
	server {
		listen 127.0.0.1:$port;
		location / { default_type text/plain; return 200 "hello from nginx $i\n"; }
	}
}
CONF
	"$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/error.log" 2>"$d/stderr" &
	pids+=($!)
	[ $i = 1 ] && NPID=$!
done
waitport "$N1"; waitport "$N2"

# --- HAProxy, nbthread 1, http and tcp
HH=$(freeport); HT=$(freeport)
cat >"$tmp/haproxy.cfg" <<CONF
global
	nbthread 1
	maxconn 4096
defaults
	timeout connect 5s
	timeout client 60s
	timeout server 60s
frontend fe_http
	mode http
	option http-keep-alive
	bind 127.0.0.1:$HH
	default_backend be_http
backend be_http
	mode http
	balance roundrobin
	server n1 127.0.0.1:$N1
	server n2 127.0.0.1:$N2
frontend fe_tcp
	mode tcp
	bind 127.0.0.1:$HT
	default_backend be_tcp
backend be_tcp
	mode tcp
	balance roundrobin
	server n1 127.0.0.1:$N1
	server n2 127.0.0.1:$N2
CONF
"$HAPROXY" -f "$tmp/haproxy.cfg" -db >"$tmp/haproxy.log" 2>&1 &
pids+=($!); HPID=$!

# --- podblocks
# shellcheck disable=SC2086
go build ${GOFLAGS_EXTRA:-} -o "$tmp/ambassador" ./examples/ambassador
B="127.0.0.1:$N1,127.0.0.1:$N2"
# name:port:pid (the pid whose CPU time is charged to the target: the proxy, or nginx for direct)
targets=()
[ -z "$ONLY" ] && targets+=(direct:$N1:$NPID)
for kind in http tcp; do
	if [ -n "$ONLY" ] && [ "$ONLY" != "$kind" ]; then continue; fi
	hport=$([ $kind = http ] && echo "$HH" || echo "$HT")
	p0=$(freeport); p1=$(freeport)
	"$tmp/ambassador" $kind -listen "127.0.0.1:$p0" -backends "$B" >/dev/null &
	pids+=($!); pid0=$!
	GOMAXPROCS=1 "$tmp/ambassador" $kind -listen "127.0.0.1:$p1" -backends "$B" >/dev/null &
	pids+=($!); pid1=$!
	targets+=(haproxy-$kind:$hport:$HPID podblocks-$kind:$p0:$pid0 podblocks-$kind-gomaxprocs1:$p1:$pid1)
	if [ -n "${BASE:-}" ]; then
		p2=$(freeport); p3=$(freeport)
		"$BASE" $kind -listen "127.0.0.1:$p2" -backends "$B" >/dev/null &
		pids+=($!); pid2=$!
		GOMAXPROCS=1 "$BASE" $kind -listen "127.0.0.1:$p3" -backends "$B" >/dev/null &
		pids+=($!); pid3=$!
		targets+=(base-$kind:$p2:$pid2 base-$kind-gomaxprocs1:$p3:$pid3)
	fi
done
for t in "${targets[@]}"; do IFS=: read -r _ port _ <<<"$t"; waitport "$port"; done
# cputicks PID: user+system CPU time of a process, in clock ticks.
cputicks() { awk '{print $14+$15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
# warm up every target (fills keep-alive pools)
for t in "${targets[@]}"; do IFS=: read -r _ port _ <<<"$t"; wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$port/" >/dev/null; done

echo "# $(date -u +%FT%TZ) nproc=$(nproc) runs=$RUNS duration=$DURATION wrk -t1 -c$CONNS" | tee "$tmp/results"
for r in $(seq "$RUNS"); do
	# every other round in the reverse order, so that no target always follows the same one
	order=("${targets[@]}")
	if ((r % 2 == 0)); then order=(); for ((i = ${#targets[@]} - 1; i >= 0; i--)); do order+=("${targets[$i]}"); done; fi
	for t in "${order[@]}"; do
		IFS=: read -r name port pid <<<"$t"
		c0=$(cputicks "$pid")
		out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port/")
		c1=$(cputicks "$pid")
		rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
		p99=$(awk '$1=="99%" {print $2}' <<<"$out")
		n=$(awk '/requests in/ {print $1}' <<<"$out")
		cpu=$(python3 -c "print(f'{($c1-$c0)/$HZ*1e6/max($n,1):.1f}')")
		errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
		echo "run=$r target=$name rps=$rps p99=$p99 cpu_us_per_req=$cpu $errs" | tee -a "$tmp/results"
	done
done

mkdir -p "$RESULTS"
python3 - "$tmp/results" "$RESULTS" "$ONLY" "${BASE:-}" <<'PY'
import re, statistics, sys
def ms(s):
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
rps, p99, cpu = {}, {}, {}
for line in open(sys.argv[1]):
    if line.startswith("#"):
        continue
    f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
    rps.setdefault(f["target"], []).append(float(f["rps"]))
    p99.setdefault(f["target"], []).append(ms(f["p99"]))
    cpu.setdefault(f["target"], []).append(float(f["cpu_us_per_req"]))
med = {t: (statistics.median(rps[t]), statistics.median(p99[t])) for t in rps}
mcpu = {t: statistics.median(cpu[t]) for t in cpu}
print()
print(f"{'target':28} {'req/s (median)':>15} {'p99 ms (median)':>16} {'CPU us/req (median)':>20}")
for t, (r, p) in med.items():
    print(f"{t:28} {r:15.0f} {p:16.2f} {mcpu[t]:20.1f}")
print()
only = sys.argv[3]
kinds = (only,) if only else ("http", "tcp")
for kind in kinds:
    hr, hp = med[f"haproxy-{kind}"]
    for t in (f"podblocks-{kind}", f"podblocks-{kind}-gomaxprocs1", f"base-{kind}", f"base-{kind}-gomaxprocs1"):
        if t not in med:
            continue
        r, p = med[t]
        ok = "met" if r >= hr and (kind == "tcp" or p <= 1.2 * hp) else "NOT MET"
        c = mcpu[t] / mcpu[f"haproxy-{kind}"]
        print(f"{t:28} throughput {r/hr:5.2f}x haproxy   p99 {p/hp:5.2f}x haproxy   CPU/req {c:5.2f}x haproxy   goal {ok}")
        rounds = ", ".join(f"{a/b:.3f}" for a, b in zip(rps[t], rps[f"haproxy-{kind}"]))
        print(f"{'':28} throughput per round: {rounds}")
for kind in kinds:
    for g in ("", "-gomaxprocs1"):
        t, b = f"podblocks-{kind}{g}", f"base-{kind}{g}"
        if b in cpu:
            rr = ", ".join(f"{x/y:.3f}" for x, y in zip(cpu[t], cpu[b]))
            print(f"{t:28} CPU/req over {b}, per round: {rr}")
if only or sys.argv[4]:
    sys.exit(0)  # a partial or A/B run does not overwrite the charts' data
# The medians as printed above (same rounding), as group,series,value rows for bench/plots.sh.
head = open(sys.argv[1]).readline().lstrip("# ").split()
stamp = head[0].replace("T", " ").rstrip("Z")[:16] + " UTC"
info = dict(kv.split("=", 1) for kv in head if "=" in kv)
runs, dur, conns = info["runs"], info["duration"], head[-1]
for kind in ("http", "tcp"):
    path = f"{sys.argv[2]}/ambassador-{kind}.bars.csv"
    names = [("direct", "direct"), (f"haproxy-{kind}", "haproxy"), (f"podblocks-{kind}", "podblocks"),
             (f"podblocks-{kind}-gomaxprocs1", "podblocks GOMAXPROCS=1")]
    with open(path, "w") as f:
        f.write(f"# ambassador {kind.upper()} vs HAProxy: wrk -t1 {conns}, medians of {runs} x {dur} ({stamp}) | | \n")
        f.write("group,series,value\n")
        for t, s in names:
            f.write(f"req/s,{s},{med[t][0]:.0f}\n")
        for t, s in names:
            f.write(f"p99 ms,{s},{med[t][1]:.2f}\n")
        for t, s in names:
            f.write(f"CPU us/req,{s},{mcpu[t]:.1f}\n")
    print("wrote", path)
PY
