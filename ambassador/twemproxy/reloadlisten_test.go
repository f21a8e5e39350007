package twemproxy_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/lifecycletest"
)

// bothProtocols serves memcache and redis pools. Its memcache pools answer "version" themselves
// (kindClient asks it of pools whose servers do not run).
var bothProtocols = twemproxy.Protocols{Memcache: &memcache.Protocol{Version: "1.6.0"}, Redis: &redis.Protocol{}}

// kindClient is a client connection to a pool, which tells the pool's kind by a command the proxy
// answers itself.
type kindClient struct {
	c net.Conn
	r *bufio.Reader
}

func dialKind(t *testing.T, network, addr string) *kindClient {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &kindClient{c: c, r: bufio.NewReader(c)}
}

// kind sends memcache "version", then redis PING, and returns "memcache" or "redis" by which one
// was answered, or the error that ended the connection.
func (k *kindClient) kind() (string, error) {
	_ = k.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := k.c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return "", err
	}
	line, err := k.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if line == "+PONG\r\n" {
		return "redis", nil
	}
	// A memcache pool refuses the RESP array: ask it its version on a fresh line.
	if _, err := k.c.Write([]byte("version\r\n")); err != nil {
		return "", err
	}
	for !strings.HasPrefix(line, "VERSION ") {
		if line, err = k.r.ReadString('\n'); err != nil {
			return "", err
		}
	}
	return "memcache", nil
}

// Changing only the permission of a pool's unix socket keeps the pool's listener and its clients
// and applies the permission to the socket file; the old code moved the pool, and the old
// listener's close unlinked the new socket's file.
func TestReloadUnixPermissionKeepsSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "p.sock")
	yml := func(perm string) string {
		return fmt.Sprintf("a:\n  listen: %s %s\n  servers:\n   - 127.0.0.1:1:1\n", sock, perm)
	}
	srv, err := twemproxy.NewServer(parseConfig(t, yml("0666")), bothProtocols)
	if err != nil {
		t.Fatal(err)
	}
	run := lifecycletest.StartReady(t, srv, 10*time.Second)
	c := dialKind(t, "unix", sock)
	if k, err := c.kind(); k != "memcache" {
		t.Fatalf("before the reload: %q, %v", k, err)
	}
	if err := srv.Reload(parseConfig(t, yml("0660"))); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatalf("after the reload the pool's socket file is gone: %v", err)
	}
	if got := fi.Mode().Perm(); got != 0o660 {
		t.Errorf("socket permission after the reload = %o, want 660", got)
	}
	if k, err := c.kind(); k != "memcache" {
		t.Errorf("the client connected before the reload: %q, %v", k, err)
	}
	if k, err := dialKind(t, "unix", sock).kind(); k != "memcache" {
		t.Errorf("a new client after the reload: %q, %v", k, err)
	}
	if err := run.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket file is left after Run returned: %v", err)
	}
}

// A kept pool whose socket file someone removed does not fail a Reload that leaves its permission
// as it was (here one that adds a pool): there is nothing of this reload's to apply to it.
func TestReloadWithSocketFileGone(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	srv, run := startKinds(t, a+" 0666", b)
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	c := filepath.Join(dir, "c.sock")
	extra := "c:\n  listen: " + c + "\n  servers:\n   - 127.0.0.1:1:1\n"
	if err := srv.Reload(parseConfig(t, kindsYAML(a+" 0666", b, extra))); err != nil {
		t.Errorf("Reload adding pool c: %v", err)
	}
	if _, err := os.Stat(c); err != nil {
		t.Errorf("pool c's socket: %v", err)
	}
	if err := run.Stop(10 * time.Second); err != nil {
		t.Error(err)
	}
}

// A kept pool's socket path that now holds another file (the pool's socket removed, another made
// there) is not chmodded by a Reload that changes the pool's permission: the file is not the pool's.
func TestReloadLeavesAnotherFileAtSocketPath(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	srv, run := startKinds(t, a+" 0666", b)
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(parseConfig(t, kindsYAML(a+" 0644", b, ""))); err != nil {
		t.Errorf("Reload: %v", err)
	}
	if fi, err := os.Stat(a); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the other file at the pool's path: %v, %v; want it left at 0600", fi.Mode(), err)
	}
	if err := run.Stop(10 * time.Second); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(a); err != nil {
		t.Errorf("the other file after the pool stopped: %v; want it left in place", err)
	}
}

// symlinkedDir makes dir/real and dir/link -> real, and returns the paths of name in each.
func symlinkedDir(t *testing.T, name string) (real, link string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "real", name), filepath.Join(dir, "link", name)
}

// foreignTCP returns an address that a listener other than the Server's holds until the test ends.
func foreignTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// A pool's socket reached by another path (a directory of it symlinked) is the pool's socket: a
// reload that moves the pool there keeps it and its clients, also when the reload fails on
// another pool's address, which another process holds; a new pool on the old path is refused, with
// an error naming the pool that keeps the socket. The old code counted the new path as another
// address: its bind removed the live socket file, the failed reload closed the new listener, and
// the pool served on with no file to reach it by.
func TestReloadSocketThroughSymlinkedDir(t *testing.T) {
	real, link := symlinkedDir(t, "a.sock")
	addrB := freeport.TCP(t)
	srv, run := startKinds(t, real, addrB)
	ca := dialKind(t, "unix", real)
	taken := "c:\n  listen: " + foreignTCP(t) + "\n  servers:\n   - 127.0.0.1:1:1\n"
	if err := srv.Reload(parseConfig(t, kindsYAML(link, addrB, taken))); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Reload adding pool c on a taken address = %v, want address in use", err)
	}
	checkKinds(t, srv, "unix", map[string]string{real: "memcache", link: "memcache"}, "a", "b")
	if err := srv.Reload(parseConfig(t, kindsYAML(link, addrB, ""))); err != nil {
		t.Errorf("Reload to the path through the link: %v", err)
	}
	other := "c:\n  listen: " + real + "\n  servers:\n   - 127.0.0.1:1:1\n"
	err := srv.Reload(parseConfig(t, kindsYAML(link, addrB, other)))
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), `pool "a"`) {
		t.Errorf("Reload adding pool c on pool a's socket = %v, want address in use, naming pool a", err)
	}
	checkKinds(t, srv, "unix", map[string]string{real: "memcache", link: "memcache"}, "a", "b")
	if k, err := ca.kind(); k != "memcache" {
		t.Errorf("pool a's client after the reloads: %q, %v", k, err)
	}
	if err := run.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(real); !os.IsNotExist(err) {
		t.Errorf("the socket file is left after Run returned: %v", err)
	}
}

// A new pool on another path to a socket that a closing pool holds waits for that pool to stop, as
// on the same path: when the reload fails on an address another process holds, the closing pool
// serves on, reachable. The old code removed its socket file to bind the new pool, and the failed
// reload removed the new pool's.
func TestReloadHeldSocketThroughSymlinkedDir(t *testing.T) {
	real, link := symlinkedDir(t, "a.sock")
	addrB := freeport.TCP(t)
	srv, run := startKinds(t, real, addrB)
	ca := dialKind(t, "unix", real)
	extra := "c:\n  listen: " + link + "\n  servers:\n   - 127.0.0.1:1:1\n" +
		"d:\n  listen: " + foreignTCP(t) + "\n  servers:\n   - 127.0.0.1:1:1\n"
	moved := filepath.Join(filepath.Dir(real), "moved.sock")
	if err := srv.Reload(parseConfig(t, kindsYAML(moved, addrB, extra))); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Reload = %v, want address in use", err)
	}
	checkKinds(t, srv, "unix", map[string]string{real: "memcache"}, "a", "b")
	if k, err := ca.kind(); k != "memcache" {
		t.Errorf("pool a's client after the failed reload: %q, %v", k, err)
	}
	if err := run.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}
