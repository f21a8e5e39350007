//go:build unix

package rawsys_test

import (
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/internal/rawsys"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPipeReadWrite(t *testing.T) {
	var p [2]int
	if err := syscall.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(p[0])
	defer syscall.Close(p[1])
	if err := syscall.SetNonblock(p[0], true); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if n, e := rawsys.Read(p[0], buf); e != syscall.EAGAIN || n != 0 {
		t.Fatalf("read of an empty non-blocking pipe: %d, %v; want 0, EAGAIN", n, e)
	}
	if n, e := rawsys.Write(p[1], []byte("hello")); n != 5 || e != 0 {
		t.Fatalf("write: %d, %v", n, e)
	}
	if n, e := rawsys.Write(p[1], nil); n != 0 || e != 0 {
		t.Fatalf("empty write: %d, %v", n, e)
	}
	n, e := rawsys.Read(p[0], buf)
	if e != 0 || string(buf[:n]) != "hello" {
		t.Fatalf("read: %q, %v; want hello", buf[:n], e)
	}
	if _, e := rawsys.Write(-1, []byte("x")); e != syscall.EBADF {
		t.Fatalf("write to -1: %v, want EBADF", e)
	}
}
