package twemproxy_test

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/lifecycletest"
)

// A reload that moves a pool to another host on the same port (127.0.0.1:P to 0.0.0.0:P, and
// back, or to a host name) serves the new address: the old code bound it while the old listener
// still held the port, and failed with "address already in use". A pool of another name that
// takes the port of a removed pool on another host works alike. The other pools keep their
// clients.
func TestReloadRespelledListenAddress(t *testing.T) {
	port := func(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
	for _, tc := range []struct {
		name, from, to string
		moveTo         func(to, b string) string // the new config, a pool on to
	}{
		{"loopback to any", "127.0.0.1", "0.0.0.0", func(to, b string) string { return kindsYAML(to, b, "") }},
		{"any to loopback", "0.0.0.0", "127.0.0.1", func(to, b string) string { return kindsYAML(to, b, "") }},
		{"address to name", "127.0.0.1", "localhost", func(to, b string) string { return kindsYAML(to, b, "") }},
		{"removed pool's port", "127.0.0.1", "0.0.0.0", func(to, b string) string {
			return "b:\n  listen: " + b + "\n  redis: true\n  servers:\n   - 127.0.0.1:1:1\n" +
				"c:\n  listen: " + to + "\n  servers:\n   - 127.0.0.1:1:1\n"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, addrB := port(freeport.TCP(t)), freeport.TCP(t)
			from, to := net.JoinHostPort(tc.from, p), net.JoinHostPort(tc.to, p)
			srv, run := startKinds(t, from, addrB)
			cb := dialKind(t, "tcp", addrB)
			cfg := parseConfig(t, tc.moveTo(to, addrB))
			if err := srv.Reload(cfg); err != nil {
				t.Fatalf("Reload from %s to %s: %v", from, to, err)
			}
			if srv.Config() != cfg {
				t.Error("Config() is not the reloaded configuration")
			}
			pools := []string{"a", "b"}
			if cfg.Pool("c") != nil {
				pools = []string{"b", "c"}
			}
			checkKinds(t, srv, "tcp", map[string]string{net.JoinHostPort("127.0.0.1", p): "memcache"}, pools...)
			if k, err := cb.kind(); k != "redis" {
				t.Errorf("the kept pool's client after the reload: %q, %v", k, err)
			}
			if err := run.Stop(10 * time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// relisten sets the listen address of cfg's pool i to addr, as a Config built in Go may have it:
// Parse refuses two pools whose addresses collide, which these tests give Reload.
func relisten(cfg *twemproxy.Config, i int, addr string) *twemproxy.Config {
	cfg.Pools[i].ListenAddr = addr
	return cfg
}

// When the respelled address cannot be bound, the reload fails and changes nothing: the pool
// serves again on its old address, and the other pools keep their clients.
func TestReloadRespelledAddressRollsBack(t *testing.T) {
	_, p, _ := net.SplitHostPort(freeport.TCP(t))
	addrB := freeport.TCP(t)
	from, to := "127.0.0.1:"+p, "0.0.0.0:"+p
	srv, run := startKinds(t, from, addrB)
	old := srv.Config()
	cb := dialKind(t, "tcp", addrB)
	errTaken := errors.New("taken by another process")
	twemproxy.FailListen(srv, func(network, addr string) error {
		if addr == to {
			return errTaken
		}
		return nil
	})
	if err := srv.Reload(parseConfig(t, kindsYAML(to, addrB, ""))); !errors.Is(err, errTaken) {
		t.Errorf("Reload = %v, want %v", err, errTaken)
	}
	twemproxy.FailListen(srv, nil)
	checkUnchanged(t, srv, old, map[string]string{from: "memcache", addrB: "redis"}, cb, "a", "b")
	if err := run.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// A pool that moves onto the port a kept pool listens on, on another host, cannot be bound while
// that pool serves: the reload fails, and its error says which pool holds the port and what to do.
// (Parse refuses such a config, which a Config built in Go can hold: see relisten.)
func TestReloadOntoKeptPoolsPortSaysWhy(t *testing.T) {
	_, p, _ := net.SplitHostPort(freeport.TCP(t))
	addrA, addrB := "127.0.0.1:"+p, freeport.TCP(t)
	srv, run := startKinds(t, addrA, addrB)
	old := srv.Config()
	err := srv.Reload(relisten(parseConfig(t, kindsYAML(addrA, "0.0.0.0:1", "")), 1, "0.0.0.0:"+p))
	if err == nil || !strings.Contains(err.Error(), `pool "a"`) || !strings.Contains(err.Error(), "same port") {
		t.Errorf("Reload = %v, want an error naming pool a, which keeps the same port", err)
	}
	checkKinds(t, srv, "tcp", map[string]string{addrA: "memcache", addrB: "redis"}, "a", "b")
	if srv.Config() != old {
		t.Error("Config() changed")
	}
	if err := run.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// A listen port spelled with leading zeros (127.0.0.1:022121, which nutcracker -t accepts) is the
// same port as without them: a reload to the same address spelled so keeps the pool and its
// clients, and back. The old code compared the ports as written, moved the pool, and failed to
// bind the port its own listener held with "address already in use".
func TestReloadPortWithLeadingZero(t *testing.T) {
	_, p, _ := net.SplitHostPort(freeport.TCP(t))
	addrA, addrB := "127.0.0.1:"+p, freeport.TCP(t)
	srv, run := startKinds(t, addrA, addrB)
	ca := dialKind(t, "tcp", addrA)
	for _, listen := range []string{"127.0.0.1:0" + p, "127.0.0.1:00" + p, addrA} {
		if err := srv.Reload(parseConfig(t, kindsYAML(listen, addrB, ""))); err != nil {
			t.Fatalf("Reload to %s: %v", listen, err)
		}
		if k, err := ca.kind(); k != "memcache" {
			t.Errorf("after the reload to %s, pool a's client: %q, %v", listen, k, err)
		}
	}
	if err := run.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// A pool moved on its port to a host that overlaps the host of a kept pool on that port (a on
// 127.0.0.1:P to 0.0.0.0:P, b kept on 127.0.0.2:P) cannot be bound while b serves: the reload is
// refused, with an error that names b, before anything is stopped, and a keeps its clients. The old
// code stopped a (its address counted as held by its old self), failed the bind, and started a again
// with its clients gone. 0.0.0.0 collides with a kept pool whose host is a name too (b on
// localhost:P) when the name was bound on an IPv4 address, as b's listener says; until this was
// fixed, a name was left to the bind, which failed after a was stopped. The error is on a, the
// pool that moves, though b comes later in the file: the old code blamed b, which the reload does
// not change.
func TestReloadMoveOntoKeptPoolsPortKeepsClients(t *testing.T) {
	for _, tc := range []struct{ a, b string }{{"127.0.0.1", "127.0.0.2"}, {"127.0.0.2", "localhost"}} {
		t.Run(tc.b, func(t *testing.T) {
			if ips, err := net.DefaultResolver.LookupNetIP(t.Context(), "ip", tc.b); err != nil || len(ips) == 0 || !ips[0].Unmap().Is4() {
				t.Skipf("%s is not bound on an IPv4 address here: %v %v", tc.b, ips, err)
			}
			_, p, _ := net.SplitHostPort(freeport.TCP(t))
			addrA, addrB := net.JoinHostPort(tc.a, p), net.JoinHostPort(tc.b, p)
			srv, run := startKinds(t, addrA, addrB)
			old := srv.Config()
			ca, cb := dialKind(t, "tcp", addrA), dialKind(t, "tcp", addrB)
			err := srv.Reload(relisten(parseConfig(t, kindsYAML("0.0.0.0:1", addrB, "")), 0, "0.0.0.0:"+p))
			var ce *twemproxy.ConfigError
			if !errors.Is(err, syscall.EADDRINUSE) || !errors.As(err, &ce) || ce.Pool != "a" || ce.Key != "listen" ||
				!strings.Contains(err.Error(), `pool "b"`) || !strings.Contains(err.Error(), "same port") {
				t.Errorf("Reload = %v, want a ConfigError on pool a's listen, address in use, naming pool b, which keeps the same port", err)
			}
			if k, err := ca.kind(); k != "memcache" {
				t.Errorf("pool a's client after the refused reload: %q, %v", k, err)
			}
			checkUnchanged(t, srv, old, map[string]string{addrA: "memcache", addrB: "redis"}, cb, "a", "b")
			if err := run.Stop(10 * time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Port 0 (any free port, which only a Config built in Go can ask for) never collides: each
// listener gets a port of its own. A reload that adds a pool on 0.0.0.0:0 beside a kept pool on
// 127.0.0.1:0 succeeds; the old code took the two for one port and refused the reload.
func TestReloadPortZeroNeverCollides(t *testing.T) {
	addrB := freeport.TCP(t)
	cfg := parseConfig(t, kindsYAML("127.0.0.1:1", addrB, ""))
	cfg.Pools[0].ListenAddr = "127.0.0.1:0" // Parse refuses port 0
	srv, err := twemproxy.NewServer(cfg, bothProtocols)
	if err != nil {
		t.Fatal(err)
	}
	run := lifecycletest.StartReady(t, srv, 10*time.Second)
	cb := dialKind(t, "tcp", addrB)
	cfg = parseConfig(t, kindsYAML("127.0.0.1:1", addrB, "c:\n  listen: 127.0.0.1:2\n  servers:\n   - 127.0.0.1:1:1\n"))
	cfg.Pools[0].ListenAddr, cfg.Pools[2].ListenAddr = "127.0.0.1:0", "0.0.0.0:0"
	if err := srv.Reload(cfg); err != nil {
		t.Errorf("Reload adding a pool on 0.0.0.0:0 beside a kept pool on 127.0.0.1:0: %v", err)
	}
	checkKinds(t, srv, "tcp", map[string]string{addrB: "redis"}, "a", "b", "c")
	if k, err := cb.kind(); k != "redis" {
		t.Errorf("the kept pool's client after the reload: %q, %v", k, err)
	}
	if err := run.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// A reload whose new pools collide with each other (a moved on its port from 127.0.0.1:P to
// 0.0.0.0:P, a new pool c on 127.0.0.2:P) is refused before anything is stopped, with a
// *ConfigError naming both, and a keeps its clients. The old code compared the new addresses only
// with the kept pools': it bound c, stopped a, failed a's bind, and started a again with its clients
// closed.
func TestReloadRefusesCollidingNewPools(t *testing.T) {
	_, p, _ := net.SplitHostPort(freeport.TCP(t))
	addrA, addrB := "127.0.0.1:"+p, freeport.TCP(t)
	srv, run := startKinds(t, addrA, addrB)
	old := srv.Config()
	ca, cb := dialKind(t, "tcp", addrA), dialKind(t, "tcp", addrB)
	c := "c:\n  listen: 127.0.0.2:" + p + "\n  servers:\n   - 127.0.0.1:1:1\n"
	cfg := relisten(parseConfig(t, kindsYAML("0.0.0.0:1", addrB, c)), 0, "0.0.0.0:"+p)
	var ce *twemproxy.ConfigError
	if err := srv.Reload(cfg); !errors.As(err, &ce) || ce.Pool != "c" || ce.Key != "listen" || !strings.Contains(err.Error(), `pool "a"`) {
		t.Errorf("Reload = %v, want a ConfigError on pool c's listen, naming pool a", err)
	}
	if k, err := ca.kind(); k != "memcache" {
		t.Errorf("pool a's client after the refused reload: %q, %v", k, err)
	}
	checkUnchanged(t, srv, old, map[string]string{addrA: "memcache", addrB: "redis"}, cb, "a", "b")
	if err := run.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}
