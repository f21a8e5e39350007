package main

import (
	"os"
	"strings"
	"syscall"
	"testing"
)

// fcntl runs fcntl(fd, cmd, arg) on f's descriptor without Fd, which would make it blocking.
func fcntl(t *testing.T, f *os.File, cmd, arg uintptr) uintptr {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var r uintptr
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) { r, _, errno = syscall.Syscall(syscall.SYS_FCNTL, fd, cmd, arg) }); err != nil {
		t.Fatal(err)
	}
	if errno != 0 {
		t.Fatal(errno)
	}
	return r
}

func TestGrowPipe(t *testing.T) {
	if b, err := os.ReadFile("/proc/sys/fs/pipe-max-size"); err != nil || (os.Geteuid() != 0 && strings.TrimSpace(string(b)) != "1048576") {
		t.Skipf("pipe-max-size %q (%v): a 1 MiB pipe needs the default limit or root", b, err)
	}
	r, w, err := os.Pipe() // non-blocking descriptors, like a stdout some parents hand over
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if fcntl(t, w, syscall.F_GETFL, 0)&syscall.O_NONBLOCK == 0 {
		t.Fatal("os.Pipe gave a blocking descriptor")
	}
	growPipe(w)
	const fGetPipeSz = 1032 // F_GETPIPE_SZ
	if n := fcntl(t, w, fGetPipeSz, 0); n != 1<<20 {
		t.Errorf("pipe capacity %d, want %d", n, 1<<20)
	}
	// The open file description is shared with whoever else writes to the pipe: its mode stays.
	if fcntl(t, w, syscall.F_GETFL, 0)&syscall.O_NONBLOCK == 0 {
		t.Error("growPipe made the descriptor blocking")
	}
	// Not a pipe: left alone.
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	growPipe(f)
}
