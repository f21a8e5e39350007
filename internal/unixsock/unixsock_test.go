package unixsock_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/internal/unixsock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stale leaves a socket file at path that nothing listens on, as a killed process does.
func stale(t *testing.T, network, path string) {
	t.Helper()
	switch network {
	case "unix":
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close()
	case "unixgram":
		c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("no stale socket file: %v", err)
	}
}

func TestStaleSocketsAreReplaced(t *testing.T) {
	dir := t.TempDir()
	for _, network := range []string{"unix", "unixgram"} {
		for _, listen := range []string{"unix", "unixgram"} {
			path := filepath.Join(dir, network+"-"+listen+".sock")
			stale(t, network, path)
			var c interface{ Close() error }
			var err error
			if listen == "unix" {
				c, err = unixsock.Listen(path)
			} else {
				c, err = unixsock.ListenPacket(path)
			}
			if err != nil {
				t.Fatalf("stale %s socket, listen %s: %v", network, listen, err)
			}
			if err := c.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("listen %s: socket file left after Close (%v)", listen, err)
			}
		}
	}
}

func TestLiveSocketsAndFilesAreKept(t *testing.T) {
	dir := t.TempDir()
	stream := filepath.Join(dir, "stream.sock")
	ln, err := unixsock.Listen(stream)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	gram := filepath.Join(dir, "gram.sock")
	pc, err := unixsock.ListenPacket(gram)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, path := range []string{stream, gram} {
		if _, err := unixsock.Listen(path); !errors.Is(err, unixsock.ErrInUse) {
			t.Errorf("Listen(live %s) = %v, want ErrInUse", filepath.Base(path), err)
		}
		if _, err := unixsock.ListenPacket(path); !errors.Is(err, unixsock.ErrInUse) {
			t.Errorf("ListenPacket(live %s) = %v, want ErrInUse", filepath.Base(path), err)
		}
		if _, err := os.Lstat(path); err != nil {
			t.Errorf("live socket %s removed: %v", filepath.Base(path), err)
		}
	}
	// The live datagram socket still receives.
	c, err := net.Dial("unixgram", gram)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Errorf("write to the live socket: %v", err)
	}
	buf := make([]byte, 8)
	if n, _, err := pc.ReadFrom(buf); err != nil || string(buf[:n]) != "x" {
		t.Errorf("ReadFrom = %q, %v", buf[:n], err)
	}

	file := filepath.Join(dir, "data")
	if err := os.WriteFile(file, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := unixsock.ListenPacket(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("ListenPacket on a regular file: %v, want an error saying it is not a socket", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep" {
		t.Errorf("regular file after ListenPacket: %q, %v", b, err)
	}
}

// listenAny listens on path with Listen or ListenPacket. On an error the closer is nil (no typed nil).
func listenAny(listen, path string) (interface{ Close() error }, error) {
	if listen == "unix" {
		if ln, err := unixsock.Listen(path); err != nil {
			return nil, err
		} else {
			return ln, nil
		}
	}
	if pc, err := unixsock.ListenPacket(path); err != nil {
		return nil, err
	} else {
		return pc, nil
	}
}

// TestConcurrentStartersOnAStalePath: of two starters at once on one stale socket path, one
// listens and the other gets ErrInUse; both listening would leave one with a socket nobody can
// reach (its file replaced by the other's).
func TestConcurrentStartersOnAStalePath(t *testing.T) {
	dir := t.TempDir()
	for _, listen := range []string{"unix", "unixgram"} {
		path := filepath.Join(dir, listen+".sock")
		for round := range 300 {
			stale(t, listen, path)
			var wg sync.WaitGroup
			var cs [2]interface{ Close() error }
			var errs [2]error
			for i := range 2 {
				wg.Go(func() { cs[i], errs[i] = listenAny(listen, path) })
			}
			wg.Wait()
			ok := 0
			for i := range 2 {
				if errs[i] == nil {
					ok++
				} else if !errors.Is(errs[i], unixsock.ErrInUse) {
					t.Errorf("%s round %d: %v, want ErrInUse", listen, round, errs[i])
				}
			}
			if ok != 1 {
				t.Errorf("%s round %d: %d of 2 starters listen on one path (%v), want 1", listen, round, ok, errs)
			}
			for _, c := range cs {
				if c != nil {
					c.Close()
				}
			}
			if t.Failed() {
				return
			}
		}
	}
}

// TestCloseKeepsAnotherListenersSocket: a listener whose socket file was replaced by another
// listener's leaves that file alone when it closes.
func TestCloseKeepsAnotherListenersSocket(t *testing.T) {
	dir := t.TempDir()
	for _, listen := range []string{"unix", "unixgram"} {
		path := filepath.Join(dir, listen+".sock")
		first, err := listenAny(listen, path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(path); err != nil { // as an rm, or a starter that took the path over
			t.Fatal(err)
		}
		second, err := listenAny(listen, path)
		if err != nil {
			t.Fatal(err)
		}
		if err := first.Close(); err != nil {
			t.Errorf("%s: Close of the first: %v", listen, err)
		}
		if _, err := os.Lstat(path); err != nil {
			t.Errorf("%s: the second listener's socket file is gone after the first closed: %v", listen, err)
		}
		if err := second.Close(); err != nil {
			t.Errorf("%s: Close of the second: %v", listen, err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: socket file left after the second closed (%v)", listen, err)
		}
	}
}

// TestSymlinkIsRefusedAsSuch: a symbolic link at the path, even to a stale socket, is left alone
// with an error that says it is one.
func TestSymlinkIsRefusedAsSuch(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "stale.sock")
	stale(t, "unix", target)
	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	for _, listen := range []string{"unix", "unixgram"} {
		if _, err := listenAny(listen, link); err == nil || !strings.Contains(err.Error(), "symbolic link") {
			t.Errorf("%s on a symlink to a stale socket: %v, want an error saying it is a symbolic link", listen, err)
		}
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s: symlink not kept: %v", listen, err)
		}
	}
}
