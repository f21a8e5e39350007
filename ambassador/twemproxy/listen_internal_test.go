package twemproxy

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// A pool's listener that closes after another pool bound its unix socket path must leave the other
// pool's socket file in place (Go's UnixListener unlinks its path on Close).
func TestCloseListenerKeepsNewerSocketFile(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "p.sock")
	var total atomic.Int64
	cfg := &PoolConfig{Name: "a", Listen: sock, ListenNetwork: "unix", ListenAddr: sock,
		Distribution: Ketama, ServerConnections: 1,
		Servers: []ServerConfig{{Network: "tcp", Addr: "127.0.0.1:1", Weight: 1, Name: "s"}}}
	older := newPool(cfg, nil, defaultOptions(), &total)
	if err := older.listen(); err != nil {
		t.Fatal(err)
	}
	newer := newPool(cfg, nil, defaultOptions(), &total)
	if err := newer.listen(); err != nil {
		older.closeListener()
		t.Fatal(err)
	}
	defer newer.closeListener()
	older.closeListener()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("the older listener's close removed the newer one's socket file: %v", err)
	}
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatalf("dial the newer listener: %v", err)
	}
	c.Close()
	newer.closeListener()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the newer listener's close left its socket file: %v", err)
	}
}

// hostsCollide, which refuses a reload before anything stops, never says that two hosts on one port
// collide when both can be bound, and on Linux agrees with the bind wherever either host is a
// wildcard, a name's too (the old code left a wildcard beside a name to the bind, which failed once
// the moved pool was stopped); hostsOverlap, which orders the binds, never says that two hosts do
// not overlap when the second bind fails. A host this machine cannot bind is skipped.
func TestHostsCollideAgreesWithBind(t *testing.T) {
	hosts := []string{"127.0.0.1", "127.0.0.2", "0.0.0.0", "::", "", "::1", "::ffff:127.0.0.1", "::ffff:0.0.0.0", "localhost"}
	lc := net.ListenConfig{KeepAlive: -1}
	for _, held := range hosts {
		for _, other := range hosts {
			if held == other {
				continue
			}
			probe, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			_, port, _ := net.SplitHostPort(probe.Addr().String())
			probe.Close()
			a := &PoolConfig{ListenNetwork: "tcp", ListenAddr: net.JoinHostPort(held, port)}
			b := &PoolConfig{ListenNetwork: "tcp", ListenAddr: net.JoinHostPort(other, port)}
			first, err := lc.Listen(context.Background(), "tcp", a.ListenAddr)
			if err != nil {
				t.Logf("%s cannot be bound here: %v", a.ListenAddr, err)
				continue
			}
			second, err := lc.Listen(context.Background(), "tcp", b.ListenAddr)
			if second != nil {
				second.Close()
			}
			first.Close()
			fails := err != nil
			_, ia, okA := listenIP(a)
			_, ib, okB := listenIP(b)
			wildcard := okA && ia.IsUnspecified() || okB && ib.IsUnspecified()
			if collide := hostsCollide(a, b); collide && !fails || !collide && fails && wildcard && runtime.GOOS == "linux" {
				t.Errorf("hostsCollide(%s, %s) = %v, but binding both: %v", a.ListenAddr, b.ListenAddr, collide, err)
			}
			if !hostsOverlap(a, b) && fails {
				t.Errorf("hostsOverlap(%s, %s) = false, but binding both: %v", a.ListenAddr, b.ListenAddr, err)
			}
		}
	}
}
