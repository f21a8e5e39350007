package twemproxy_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/lifecycletest"
)

// kindsYAML is a configuration of a memcache pool "a" and a redis pool "b" on the given addresses,
// plus the pools in extra.
func kindsYAML(a, b, extra string) string {
	return fmt.Sprintf("a:\n  listen: %s\n  servers:\n   - 127.0.0.1:1:1\n"+
		"b:\n  listen: %s\n  redis: true\n  servers:\n   - 127.0.0.1:1:1\n%s", a, b, extra)
}

// startKinds runs a Server of kindsYAML(a, b, "").
func startKinds(t *testing.T, a, b string) (*twemproxy.Server, *lifecycletest.Running) {
	t.Helper()
	srv, err := twemproxy.NewServer(parseConfig(t, kindsYAML(a, b, "")), bothProtocols)
	if err != nil {
		t.Fatal(err)
	}
	return srv, lifecycletest.StartReady(t, srv, 10*time.Second)
}

// checkKinds checks that each address in want is served by a pool of that kind, on a new
// connection, and that the server serves the pools named in pools.
func checkKinds(t *testing.T, srv *twemproxy.Server, network string, want map[string]string, pools ...string) {
	t.Helper()
	for addr, kind := range want {
		c, err := net.DialTimeout(network, addr, 5*time.Second)
		if err != nil {
			t.Errorf("%s (%s) is not served: %v", addr, kind, err)
			continue
		}
		k := &kindClient{c: c, r: bufio.NewReader(c)}
		if got, err := k.kind(); got != kind {
			t.Errorf("%s serves %q (%v), want %s", addr, got, err, kind)
		}
		c.Close()
	}
	var got []string
	for _, ps := range srv.Snapshot() {
		got = append(got, ps.Name)
	}
	if diff := cmp.Diff(pools, got); diff != "" {
		t.Errorf("pools served (-want +got):\n%s", diff)
	}
}

// checkUnchanged checks that srv serves after a failed reload as before it: old is its Config, want
// and pools are as checkKinds takes them, and kept, a connection to a redis pool, is still served.
func checkUnchanged(t *testing.T, srv *twemproxy.Server, old *twemproxy.Config, want map[string]string, kept *kindClient, pools ...string) {
	t.Helper()
	checkKinds(t, srv, "tcp", want, pools...)
	if k, err := kept.kind(); k != "redis" {
		t.Errorf("the kept pool's client after the failed reload: %q, %v", k, err)
	}
	if srv.Config() != old {
		t.Error("Config() changed")
	}
}

// Two pools that swap their listen addresses serve the new mapping after the reload: the old code
// skipped both binds as held, then bound the first pool's new address while the other pool still
// held it, and reported success with that pool not listening. Unix sockets swap too, and each
// path's socket file is the new pool's.
func TestReloadSwapsListenAddresses(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ network, a, b string }{
		{"tcp", freeport.TCP(t), freeport.TCP(t)},
		{"unix", filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")},
	} {
		t.Run(tc.network, func(t *testing.T) {
			srv, run := startKinds(t, tc.a, tc.b)
			checkKinds(t, srv, tc.network, map[string]string{tc.a: "memcache", tc.b: "redis"}, "a", "b")
			cfg := parseConfig(t, kindsYAML(tc.b, tc.a, ""))
			if err := srv.Reload(cfg); err != nil {
				t.Errorf("Reload: %v", err)
			}
			checkKinds(t, srv, tc.network, map[string]string{tc.a: "redis", tc.b: "memcache"}, "a", "b")
			if srv.Config() != cfg {
				t.Error("Config() is not the reloaded configuration")
			}
			if err := run.Stop(10 * time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A reload that needs an address another process holds fails, and changes nothing: every pool
// serves as before, on the same client connections, and no new pool listens.
func TestReloadWithUnbindableAddressChangesNothing(t *testing.T) {
	foreign, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Close()
	addrA, addrB, addrC := freeport.TCP(t), freeport.TCP(t), freeport.TCP(t)
	srv, run := startKinds(t, addrA, addrB)
	old := srv.Config()
	ca, cb := dialKind(t, "tcp", addrA), dialKind(t, "tcp", addrB)
	for _, tc := range []struct{ name, yml string }{
		// b moves to the foreign address; a new pool c is bound first, and closed again.
		{"moved pool", kindsYAML(addrA, foreign.Addr().String(), "c:\n  listen: "+addrC+"\n  servers:\n   - 127.0.0.1:1:1\n")},
		// a takes b's address, which b gives up only after the foreign address is bound.
		{"moved pool and held address", kindsYAML(addrB, foreign.Addr().String(), "")},
		// a new pool on the foreign address, the others unchanged or swapped.
		{"new pool", kindsYAML(addrB, addrA, "c:\n  listen: "+foreign.Addr().String()+"\n  servers:\n   - 127.0.0.1:1:1\n")},
	} {
		if err := srv.Reload(parseConfig(t, tc.yml)); err == nil {
			t.Errorf("%s: Reload onto a foreign listener's address succeeded", tc.name)
		}
		if k, err := ca.kind(); k != "memcache" {
			t.Errorf("%s: a's client after the failed reload: %q, %v", tc.name, k, err)
		}
		if k, err := cb.kind(); k != "redis" {
			t.Errorf("%s: b's client after the failed reload: %q, %v", tc.name, k, err)
		}
		checkKinds(t, srv, "tcp", map[string]string{addrA: "memcache", addrB: "redis"}, "a", "b")
		if c, err := net.DialTimeout("tcp", addrC, time.Second); err == nil {
			c.Close()
			t.Errorf("%s: the failed reload's new pool listens", tc.name)
		}
		if srv.Config() != old {
			t.Errorf("%s: Config() changed", tc.name)
		}
	}
	if err := run.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// When an address released by a pool of the old configuration cannot be bound again, the reload
// fails, and the pools it stopped serve again on their addresses with their old configuration;
// the pools it kept keep their clients.
func TestReloadRestartsStoppedPoolsWhenABindFails(t *testing.T) {
	addrA, addrB, addrK := freeport.TCP(t), freeport.TCP(t), freeport.TCP(t)
	kPool := "k:\n  listen: " + addrK + "\n  redis: true\n  servers:\n   - 127.0.0.1:1:1\n"
	srv, err := twemproxy.NewServer(parseConfig(t, kindsYAML(addrA, addrB, kPool)), bothProtocols)
	if err != nil {
		t.Fatal(err)
	}
	run := lifecycletest.StartReady(t, srv, 10*time.Second)
	old := srv.Config()
	ck := dialKind(t, "tcp", addrK)
	errTaken := errors.New("taken by another process")
	failed := false
	twemproxy.FailListen(srv, func(network, addr string) error { // called with the Server's mu held
		if addr == addrA && !failed {
			failed = true
			return errTaken // b's new address, bound after a's; then a must come back on it
		}
		return nil
	})
	if err := srv.Reload(parseConfig(t, kindsYAML(addrB, addrA, kPool))); !errors.Is(err, errTaken) {
		t.Errorf("Reload = %v, want %v", err, errTaken)
	}
	twemproxy.FailListen(srv, nil)
	checkUnchanged(t, srv, old, map[string]string{addrA: "memcache", addrB: "redis", addrK: "redis"}, ck, "a", "b", "k")
	if err := run.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}
