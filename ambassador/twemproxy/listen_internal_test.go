package twemproxy

import (
	"net"
	"os"
	"path/filepath"
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
