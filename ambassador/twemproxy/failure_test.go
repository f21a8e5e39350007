package twemproxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/internal/shardproc"
)

type respClient struct {
	c net.Conn
	r *bufio.Reader
}

func dialResp(t testing.TB, addr string) *respClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &respClient{c: c, r: bufio.NewReader(c)}
}

// do sends one command and returns its reply: "+OK", "-ERR ...", ":1", "$value" or "nil".
func (c *respClient) do(t *testing.T, args ...string) string {
	t.Helper()
	_ = c.c.SetDeadline(time.Now().Add(30 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c.c, b.String()); err != nil {
		t.Fatal(err)
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line[0] != '$' {
		return line
	}
	n, _ := strconv.Atoi(line[1:])
	if n < 0 {
		return "nil"
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(c.r, buf); err != nil {
		t.Fatal(err)
	}
	return "$" + string(buf[:n])
}

type shardFixture struct {
	backends []*shardproc.Proc
	addr     string
	pc       *twemproxy.PoolConfig
	srv      *twemproxy.Server
}

func startShards(t *testing.T, extra string) *shardFixture {
	t.Helper()
	if !shardproc.Have(shardproc.RedisPath) {
		t.Skipf("%s is not installed (Debian package redis-server); skipping", shardproc.RedisPath)
	}
	f := &shardFixture{}
	for range 3 {
		p, err := shardproc.StartRedis()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		f.backends = append(f.backends, p)
	}
	port, err := shardproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	f.addr = fmt.Sprintf("127.0.0.1:%d", port)
	conf := fmt.Sprintf("r:\n  listen: %s\n  redis: true\n  hash: murmur\n%s  servers:\n", f.addr, extra)
	for _, b := range f.backends {
		conf += fmt.Sprintf("   - %s:1\n", b.Addr)
	}
	cfg, err := twemproxy.Parse([]byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	f.pc = cfg.Pools[0]
	f.srv, err = twemproxy.NewServer(cfg, twemproxy.Protocols{Redis: &redis.Protocol{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	<-f.srv.Ready()
	return f
}

func (f *shardFixture) serverIndex(addr string) int {
	for i, s := range f.pc.Servers {
		if s.Addr == addr {
			return i
		}
	}
	return -1
}

// populate stores n keys and returns them grouped by owning server index.
func (f *shardFixture) populate(t *testing.T, c *respClient, n int) map[int][]string {
	t.Helper()
	pl := twemproxy.NewPlacer(f.pc, nil)
	owned := map[int][]string{}
	for i := range n {
		k := fmt.Sprintf("key:%d", i)
		if got := c.do(t, "SET", k, "v-"+k); got != "+OK" {
			t.Fatalf("SET %s: %s", k, got)
		}
		owned[pl.Place([]byte(k))] = append(owned[pl.Place([]byte(k))], k)
	}
	for i := range f.pc.Servers {
		if len(owned[i]) == 0 {
			t.Fatalf("no key on server %d; pick other keys", i)
		}
	}
	return owned
}

// TestKillShardEjectReshards kills one of three redis shards: the close of the proxy's idle
// connection to it ejects it, as in nutcracker, and no request for its keys fails: they move to
// the servers nutcracker's rebuilt continuum names; the other shards' keys never fail; when the
// shard is back it is readmitted after server_retry_timeout.
func TestKillShardEjectReshards(t *testing.T) {
	f := startShards(t, "  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 1000\n  timeout: 2000\n")
	c := dialResp(t, f.addr)
	owned := f.populate(t, c, 120)
	dead := f.backends[1]
	di := f.serverIndex(dead.Addr)
	var liveKeys []string
	for i, keys := range owned {
		if i != di {
			liveKeys = append(liveKeys, keys...)
		}
	}
	stopLoad := startLoad(t, f.addr, liveKeys)
	dead.Stop()
	// The close of the dead shard's idle connection counts as its failure and ejects it
	// (server_failure_limit 1) before any request for its keys.
	await.True(t, "the dead shard's ejection", 10*time.Second, func() bool {
		return f.srv.Snapshot()[0].ServerEjects >= 1
	})

	checkOthers := func() {
		for i, keys := range owned {
			if i == di {
				continue
			}
			for _, k := range keys[:min(5, len(keys))] {
				if got := c.do(t, "GET", k); got != "$v-"+k {
					t.Fatalf("live shard's key %s: %s", k, got)
				}
			}
		}
	}
	deadKey := owned[di][0]
	var errs []string
	await.True(t, "the dead shard's keys to move", 20*time.Second, func() bool {
		checkOthers()
		got := c.do(t, "GET", deadKey)
		if strings.HasPrefix(got, "-") {
			errs = append(errs, got)
		}
		return got == "nil" // moved: the new owner does not have it
	})
	if len(errs) > 0 {
		t.Errorf("the dead shard's key failed %d times after its ejection: %q", len(errs), errs)
	}
	// The moved keys land where nutcracker's continuum without the dead server puts them.
	live := make([]bool, len(f.pc.Servers))
	for i := range live {
		live[i] = i != di
	}
	moved := twemproxy.NewPlacer(f.pc, live)
	for _, k := range owned[di][:min(10, len(owned[di]))] {
		if got := c.do(t, "SET", k, "moved"); got != "+OK" {
			if strings.HasPrefix(got, "-") {
				continue // the retry window re-admitted the dead server for a moment
			}
			t.Fatalf("SET %s: %s", k, got)
		}
		owner := f.pc.Servers[moved.Place([]byte(k))].Addr
		if got := dialResp(t, owner).do(t, "GET", k); got != "$moved" {
			t.Errorf("moved key %s: not on %s (%s)", k, owner, got)
		}
	}
	checkOthers()
	if ej := f.srv.Snapshot()[0].ServerEjects; ej == 0 {
		t.Error("server_ejects = 0")
	}

	// Restart the shard on its port: after server_retry_timeout its keys go back to it.
	if err := dead.Start(); err != nil {
		t.Fatal(err)
	}
	back := dialResp(t, dead.Addr)
	await.True(t, "the restarted shard to be readmitted", 20*time.Second, func() bool {
		checkOthers()
		if got := c.do(t, "SET", deadKey, "back"); got != "+OK" {
			return false
		}
		return back.do(t, "GET", deadKey) == "$back"
	})
	if n, failures := stopLoad(); failures != nil || n == 0 {
		t.Errorf("background load on the live shards: %d requests, failures: %v", n, failures)
	} else {
		t.Logf("background load: %d requests on the live shards' keys, none failed", n)
	}
}

// startLoad runs 4 pipelining clients that GET keys (each holding "v-"+key) until stopped; stop
// returns how many requests were answered and the first wrong answers.
func startLoad(t *testing.T, addr string, keys []string) (stop func() (int, []string)) {
	t.Helper()
	quit := make(chan struct{})
	type result struct {
		n   int
		bad []string
	}
	results := make(chan result, 4)
	for w := range 4 {
		go func() {
			var res result
			defer func() { results <- res }()
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				res.bad = append(res.bad, err.Error())
				return
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			for i := w; ; i += 8 {
				select {
				case <-quit:
					return
				default:
				}
				_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
				var b strings.Builder
				batch := make([]string, 8)
				for j := range batch {
					batch[j] = keys[(i+j)%len(keys)]
					fmt.Fprintf(&b, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(batch[j]), batch[j])
				}
				if _, err := io.WriteString(conn, b.String()); err != nil {
					res.bad = append(res.bad, err.Error())
					return
				}
				for _, k := range batch {
					want := fmt.Sprintf("$%d\r\nv-%s\r\n", len(k)+2, k)
					got := make([]byte, len(want))
					if _, err := io.ReadFull(br, got); err != nil || string(got) != want {
						res.bad = append(res.bad, fmt.Sprintf("%s: %q %v", k, got, err))
						return
					}
					res.n++
				}
			}
		}()
	}
	collect := func() (int, []string) {
		close(quit)
		var n int
		var bad []string
		for range 4 {
			r := <-results
			n += r.n
			bad = append(bad, r.bad...)
		}
		return n, bad
	}
	var once sync.Once
	var total int
	var failures []string
	stop = func() (int, []string) {
		once.Do(func() { total, failures = collect() })
		return total, failures
	}
	t.Cleanup(func() { stop() }) // also when the test fails before calling stop
	return stop
}

// TestKillShardNoReshard: in no-reshard mode the dead shard's keys get an error reply (fast, and
// never a miss from another server), other keys never fail, and the active health check readmits
// the shard as soon as it answers, long before server_retry_timeout.
func TestKillShardNoReshard(t *testing.T) {
	f := startShards(t, "  auto_eject_hosts: true\n  no_reshard: true\n  server_failure_limit: 1\n"+
		"  server_retry_timeout: 600000\n  health_check_interval: 100\n  timeout: 2000\n")
	c := dialResp(t, f.addr)
	owned := f.populate(t, c, 120)
	dead := f.backends[2]
	di := f.serverIndex(dead.Addr)
	var liveKeys []string
	for i, keys := range owned {
		if i != di {
			liveKeys = append(liveKeys, keys...)
		}
	}
	stopLoad := startLoad(t, f.addr, liveKeys)
	dead.Stop()
	deadKey := owned[di][0]
	await.True(t, "the dead shard to be ejected", 20*time.Second, func() bool {
		got := c.do(t, "GET", deadKey)
		if got == "nil" || strings.HasPrefix(got, "$") {
			t.Fatalf("dead shard's key %s answered %q: it was resharded", deadKey, got)
		}
		return strings.Contains(got, "ejected")
	})
	start := time.Now()
	for _, k := range owned[di] {
		if got := c.do(t, "GET", k); !strings.Contains(got, "ejected") {
			t.Fatalf("dead shard's key %s: %q, want a fast ejected error", k, got)
		}
	}
	t.Logf("%d requests for the ejected shard failed fast in %v", len(owned[di]), time.Since(start))
	for i, keys := range owned {
		if i == di {
			continue
		}
		for _, k := range keys {
			if got := c.do(t, "GET", k); got != "$v-"+k {
				t.Fatalf("live shard's key %s: %s", k, got)
			}
		}
	}
	if err := dead.Start(); err != nil {
		t.Fatal(err)
	}
	await.True(t, "the health check to readmit the restarted shard", 20*time.Second, func() bool {
		return c.do(t, "SET", deadKey, "back") == "+OK"
	})
	if got := dialResp(t, dead.Addr).do(t, "GET", deadKey); got != "$back" {
		t.Errorf("readmitted shard: GET %s = %s", deadKey, got)
	}
	if n, failures := stopLoad(); failures != nil || n == 0 {
		t.Errorf("background load on the live shards: %d requests, failures: %v", n, failures)
	}
}

// TestTimeoutHungShard: a shard that stops answering (SIGSTOP) makes its requests fail with a
// timeout after the pool's timeout, counts server_timedout, and is ejected; other keys keep working.
func TestTimeoutHungShard(t *testing.T) {
	f := startShards(t, "  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 60000\n  timeout: 300\n")
	c := dialResp(t, f.addr)
	owned := f.populate(t, c, 90)
	hung := f.backends[0]
	hi := f.serverIndex(hung.Addr)
	if err := hung.Pause(); err != nil {
		t.Fatal(err)
	}
	defer hung.Resume()
	start := time.Now()
	got := c.do(t, "GET", owned[hi][0])
	if took := time.Since(start); !strings.Contains(got, "timed out") || took < 250*time.Millisecond || took > 10*time.Second {
		t.Fatalf("GET on a hung shard: %q after %v, want a timeout error after ~300ms", got, took)
	}
	for i, keys := range owned {
		if i == hi {
			continue
		}
		if got := c.do(t, "GET", keys[0]); got != "$v-"+keys[0] {
			t.Errorf("live shard's key %s: %s", keys[0], got)
		}
	}
	var st twemproxy.ServerStats
	for _, s := range f.srv.Snapshot()[0].Servers {
		if s.Addr == hung.Addr {
			st = s
		}
	}
	if st.ServerTimedout != 1 || !st.Ejected {
		t.Errorf("hung server stats: timedout=%d ejected=%v, want 1 and true", st.ServerTimedout, st.Ejected)
	}
	// Ejected (resharding mode): its keys now go to the others at once, without waiting.
	start = time.Now()
	if got := c.do(t, "GET", owned[hi][1]); got != "nil" || time.Since(start) > 5*time.Second {
		t.Errorf("after ejection: %q in %v, want nil from another shard", got, time.Since(start))
	}
}

// TestPreconnect: with preconnect every server connection is opened at start, before any request.
func TestPreconnect(t *testing.T) {
	f := startShards(t, "  preconnect: true\n  server_connections: 2\n")
	await.True(t, "every server connection to be open", 20*time.Second, func() bool {
		for _, s := range f.srv.Snapshot()[0].Servers {
			if s.ServerConnections != 2 || s.Requests != 0 {
				return false
			}
		}
		return true
	})
}

// server_ejected_at is in microseconds since the epoch, as nutcracker's (nc_usec_now), in the
// stats JSON and in Snapshot.
func TestEjectedAtInMicroseconds(t *testing.T) {
	dead := freeport.TCP(t)
	addr, srv, _ := twemproxytest.StartPool(t, "r", true,
		"  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 600000\n",
		[]string{dead}, twemproxy.Protocols{Redis: &redis.Protocol{}})
	before := time.Now().UnixMicro()
	if got := dialResp(t, addr).do(t, "GET", "k"); !strings.HasPrefix(got, "-") {
		t.Fatalf("GET on a dead server = %q, want an error", got)
	}
	await.True(t, "the dead server's ejection", 30*time.Second, func() bool { return srv.Snapshot()[0].Servers[0].Ejected })
	after := time.Now().UnixMicro()
	if at := srv.Snapshot()[0].Servers[0].ServerEjectedAt; at < before || at > after {
		t.Errorf("ServerEjectedAt = %d, want microseconds in [%d, %d]", at, before, after)
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(srv.StatsJSON()))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	pool, _ := doc["r"].(map[string]any)
	server, _ := pool[dead].(map[string]any)
	at, err := server["server_ejected_at"].(json.Number).Int64()
	if err != nil || at < before || at > after {
		t.Errorf("stats server_ejected_at = %v (%v), want microseconds in [%d, %d]", server["server_ejected_at"], err, before, after)
	}
}
