package main

import (
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestGrowPipe(t *testing.T) {
	if b, err := os.ReadFile("/proc/sys/fs/pipe-max-size"); err != nil || (os.Geteuid() != 0 && strings.TrimSpace(string(b)) != "1048576") {
		t.Skipf("pipe-max-size %q (%v): a 1 MiB pipe needs the default limit or root", b, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	growPipe(w)
	const fGetPipeSz = 1032 // F_GETPIPE_SZ
	n, _, errno := syscall.Syscall(syscall.SYS_FCNTL, w.Fd(), fGetPipeSz, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	if n != 1<<20 {
		t.Errorf("pipe capacity %d, want %d", n, 1<<20)
	}
	// Not a pipe: left alone.
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	growPipe(f)
}
