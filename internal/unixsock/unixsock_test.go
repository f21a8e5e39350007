package unixsock_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
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
