//go:build unix

package sidecar

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// statID is the identity stat(2) gives the file fi (at path) describes, read without fileIdentity.
func statID(t *testing.T, _ string, fi os.FileInfo) fileID {
	t.Helper()
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("%s: no stat data", fi.Name())
	}
	return fileID{uint64(st.Dev), uint64(st.Ino)} //nolint:unconvert // int types differ by platform
}

// mkfifo makes a named pipe at path.
func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fileIdentity is what stat(2) says, and sees the link count drop to 0 on unlink.
func TestFileIdentityIsStatAndSeesUnlink(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	if err := os.WriteFile(path, []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	id, nlink := identityOf(t, f)
	if want := statID(t, path, fi); id != want || nlink != 1 {
		t.Fatalf("fileIdentity = %v, %d links; want %v, 1 link", id, nlink, want)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if got, nlink := identityOf(t, f); got != id || nlink != 0 {
		t.Errorf("after unlink: fileIdentity = %v, %d links; want %v, 0 links", got, nlink, id)
	}
}
