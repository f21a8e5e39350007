package twemproxy_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/internal/shardproc"
)

// freeIPv6Port returns a port currently free on ::1, or skips the test when the IPv6 loopback is
// unavailable.
func freeIPv6Port(t *testing.T) int {
	t.Helper()
	port, err := freeport.On("[::1]:0")
	if err != nil {
		t.Skipf("IPv6 loopback ::1 is unavailable (%v); skipping", err)
	}
	return port
}

// startMemcached6 runs memcached on ::1 for the length of the test and returns its port.
func startMemcached6(t *testing.T) int {
	t.Helper()
	port := freeIPv6Port(t)
	cmd := exec.Command(shardproc.MemcachedPath, "-l", "::1", "-p", strconv.Itoa(port), "-U", "0",
		"-u", "nobody", "-m", "64", "-t", "1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	waitListening(t, net.JoinHostPort("::1", strconv.Itoa(port)), done)
	return port
}

func waitListening(t *testing.T, addr string, exited <-chan struct{}) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("exited before listening on %s", addr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listening on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A pool written the way nutcracker takes IPv6 ("listen: ::1:PORT", servers "::1:PORT:WEIGHT")
// serves, and places every key on the server nutcracker places it on: Go dials "[::1]:PORT" while
// ketama hashes nutcracker's "::1:PORT".
func TestIPv6PoolMatchesNutcracker(t *testing.T) {
	for _, bin := range []string{shardproc.NutcrackerPath, shardproc.MemcachedPath} {
		if !shardproc.Have(bin) {
			t.Skipf("%s is not installed (Debian packages nutcracker, memcached); skipping", bin)
		}
	}
	ports := []int{startMemcached6(t), startMemcached6(t), startMemcached6(t)}
	config := func(listen int) string {
		s := fmt.Sprintf("six:\n  listen: ::1:%d\n  servers:\n", listen)
		for i, p := range ports {
			s += fmt.Sprintf("   - ::1:%d:%d\n", p, i+1)
		}
		return s
	}
	ncListen, pbListen := freeIPv6Port(t), freeIPv6Port(t)
	path := filepath.Join(t.TempDir(), "nutcracker.yml")
	if err := os.WriteFile(path, []byte(config(ncListen)), 0o600); err != nil {
		t.Fatal(err)
	}
	stats, err := shardproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := shardproc.StartNutcracker(path, stats, net.JoinHostPort("::1", strconv.Itoa(ncListen)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Stop)

	cfg, err := twemproxy.Parse([]byte(config(pbListen)))
	if err != nil {
		t.Fatal(err)
	}
	pc := cfg.Pools[0]
	srv, err := twemproxy.NewServer(cfg, twemproxy.Protocols{Memcache: &memcache.Protocol{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var runErr error
	ran := make(chan struct{})
	go func() { runErr = srv.Run(ctx); close(ran) }()
	t.Cleanup(func() {
		cancel()
		<-ran
		if runErr != nil {
			t.Errorf("Run: %v", runErr)
		}
	})
	select {
	case <-srv.Ready():
	case <-ran:
		t.Fatalf("Run: %v", runErr)
	}

	direct := make([]*mcConn, len(ports))
	for i, p := range ports {
		direct[i] = dialMC(t, net.JoinHostPort("::1", strconv.Itoa(p)))
	}
	where := func(keys []string) map[string]string {
		got := map[string]string{}
		for i, d := range direct {
			for k := range d.hits(t, keys) {
				got[k] = net.JoinHostPort("::1", strconv.Itoa(ports[i]))
			}
		}
		return got
	}
	pl := twemproxy.NewPlacer(pc, nil)
	placed := func(keys []string) map[string]string {
		want := map[string]string{}
		for _, k := range keys {
			want[k] = pc.Servers[pl.Place([]byte(k))].Addr
		}
		return want
	}
	ncKeys, pbKeys := placementKeys("nc", 200), placementKeys("pb", 200)
	dialMC(t, net.JoinHostPort("::1", strconv.Itoa(ncListen))).setAll(t, ncKeys, "nc")
	dialMC(t, pc.ListenAddr).setAll(t, pbKeys, "pb")
	if diff := cmp.Diff(placed(ncKeys), where(ncKeys)); diff != "" {
		t.Errorf("placement differs from nutcracker's (-podblocks +nutcracker):\n%s", diff)
	}
	if diff := cmp.Diff(placed(pbKeys), where(pbKeys)); diff != "" {
		t.Errorf("keys stored through the proxy are not where Placer puts them (-want +got):\n%s", diff)
	}
}
