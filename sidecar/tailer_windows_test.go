//go:build windows

package sidecar

import (
	"os"
	"testing"
)

// statID is the identity of the file at path (fi is not used: on Windows it carries none).
func statID(t *testing.T, path string, _ os.FileInfo) fileID {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	id, _ := identityOf(t, f)
	return id
}

// mkfifo makes nothing: Windows has no named pipes in the file system, so the directory is the
// test's only non-regular file.
func mkfifo(*testing.T, string) {}
