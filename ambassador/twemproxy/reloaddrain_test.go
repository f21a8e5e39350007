package twemproxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/internal/loopback"
	"github.com/podblocks/podblocks/lifecycletest"
)

// hangingRedis serves connections that read every command and answer none, as a redis-server
// stopped with SIGSTOP after the request reached it. got receives each command's name; release
// closes the connections (the requests on them then fail), at the latest at the end of the test.
func hangingRedis(t *testing.T) (addr string, got <-chan string, release func()) {
	stop := make(chan struct{})
	cmds := make(chan string, 16)
	addr = loopback.Serve(t, func(i int, c net.Conn) {
		go func() { <-stop; c.Close() }()
		br := bufio.NewReader(c)
		for {
			args, err := readCommand(br)
			if err != nil {
				return
			}
			select {
			case cmds <- args[0]:
			default:
			}
		}
	})
	var once sync.Once
	release = func() { once.Do(func() { close(stop) }) }
	t.Cleanup(release) // before loopback.Serve's cleanup waits for the connections
	return addr, cmds, release
}

// sendStuckGet sends a GET on a new connection to the pool at addr and waits until the hanging
// server reports it (got).
func sendStuckGet(t *testing.T, addr string, got <-chan string) {
	t.Helper()
	c := dialResp(t, addr)
	if _, err := io.WriteString(c.c, encodeCmd("GET", "k")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the GET did not reach the server")
	}
}

// dialedRedis is a fake redis answering +OK to everything; accepted gets a value when it accepts a
// connection.
func dialedRedis(t *testing.T) (addr string, accepted <-chan struct{}) {
	ch := make(chan struct{}, 1)
	f := &fakeRedis{handle: func(conn, n int, args []string) string { return "+OK\r\n" }}
	addr = loopback.Serve(t, func(i int, c net.Conn) {
		select {
		case ch <- struct{}{}:
		default:
		}
		f.serve(i, c)
	})
	return addr, ch
}

// redisPool is the configuration of one redis pool, name, on listen, over backend be.
func redisPool(name, listen, be, extra string) string {
	return fmt.Sprintf("%s:\n  listen: %s\n  redis: true\n%s  servers:\n   - %s:1\n", name, listen, extra, be)
}

func parseConfig(t *testing.T, yml string) *twemproxy.Config {
	t.Helper()
	cfg, err := twemproxy.Parse([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// within runs f and reports an error if it takes longer than d; it returns once f has returned.
func within(t *testing.T, what string, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	start := time.Now()
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		<-done
		t.Errorf("%s took %v during the reload, want under %v", what, time.Since(start).Round(time.Millisecond), d)
	}
}

// A reload whose old server still holds a request (no timeout: up to 30 s of grace) must not hold
// up the stats port, Snapshot, the Prometheus collector, Statusz, Reload itself, or Run's return:
// the old servers drain in the background.
func TestReloadDoesNotWaitForOldServers(t *testing.T) {
	stuck, got, release := hangingRedis(t)
	defer release()
	fresh, accepted := dialedRedis(t)
	addr, statsAddr := freeport.TCP(t), freeport.TCP(t)
	reg := prometheus.NewRegistry()
	srv, err := twemproxy.NewServer(parseConfig(t, redisPool("r", addr, stuck, "")), twemproxy.Protocols{Redis: &redis.Protocol{}},
		twemproxy.WithStatsAddr(statsAddr), twemproxy.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	run := lifecycletest.StartReady(t, srv, 10*time.Second)
	sendStuckGet(t, addr, got)
	reloaded := make(chan error, 1)
	go func() { reloaded <- srv.Reload(parseConfig(t, redisPool("r", addr, fresh, "  preconnect: true\n"))) }()
	select {
	case <-accepted: // the new servers run: the old one drains now
	case <-time.After(10 * time.Second):
		t.Fatal("the reload's new server was not dialled")
	}
	const prompt = 3 * time.Second
	within(t, "a stats request", prompt, func() {
		sc, err := net.DialTimeout("tcp", statsAddr, prompt)
		if err != nil {
			t.Error(err)
			return
		}
		defer sc.Close()
		_ = sc.SetDeadline(time.Now().Add(2 * prompt))
		if doc, err := io.ReadAll(sc); err != nil || !strings.Contains(string(doc), `"r": {`) {
			t.Errorf("stats: %q, %v", doc, err)
		}
	})
	within(t, "Snapshot", prompt, func() { srv.Snapshot() })
	within(t, "the Prometheus collector", prompt, func() { _, _ = reg.Gather() })
	within(t, "Statusz", prompt, func() { srv.Statusz() })
	within(t, "Reload", prompt, func() {
		if err := <-reloaded; err != nil {
			t.Errorf("Reload: %v", err)
		}
	})
	if got := dialResp(t, addr).do(t, "GET", "x"); got != "+OK" {
		t.Errorf("GET on the new server while the old one drains = %q", got)
	}
	within(t, "Run's return", prompt, func() {
		if err := run.Stop(60 * time.Second); err != nil {
			t.Error(err)
		}
	})
}

// A pool whose servers a reload replaced must close promptly when a later reload removes it, even
// with a request stuck on its new servers: they run under the pool's context, which its removal
// ends, and not under Run's.
func TestReloadRemovesSwappedPoolWithStuckRequest(t *testing.T) {
	stuck, got, release := hangingRedis(t)
	defer release()
	first, _ := dialedRedis(t)
	addr, other := freeport.TCP(t), freeport.TCP(t)
	srv, err := twemproxy.NewServer(parseConfig(t, redisPool("r", addr, first, "")), twemproxy.Protocols{Redis: &redis.Protocol{}})
	if err != nil {
		t.Fatal(err)
	}
	run := lifecycletest.StartReady(t, srv, 10*time.Second)
	if err := srv.Reload(parseConfig(t, redisPool("r", addr, stuck, ""))); err != nil {
		t.Fatal(err)
	}
	sendStuckGet(t, addr, got)
	reloaded := make(chan error, 1)
	go func() { reloaded <- srv.Reload(parseConfig(t, redisPool("q", other, first, ""))) }()
	select {
	case err := <-reloaded:
		if err != nil {
			t.Errorf("Reload: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("a Reload removing the pool waits for the request stuck on its server")
		release() // the request fails, and the reload can finish
		<-reloaded
	}
	if err := run.Stop(10 * time.Second); err != nil {
		t.Error(err)
	}
}
