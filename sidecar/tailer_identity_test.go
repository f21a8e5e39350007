package sidecar

import (
	"os"
	"path/filepath"
	"testing"
)

// identityOf is fileIdentity of the open file f, and its link count; the test fails without one.
func identityOf(t *testing.T, f *os.File) (fileID, uint64) {
	t.Helper()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	id, nlink, ok := fileIdentity(f, fi)
	if !ok {
		t.Fatalf("%s: no file identity", f.Name())
	}
	return id, nlink
}

// fileIdentity tells files apart and knows a file by any of its names and descriptors, on every
// system the Tailer builds for.
func TestFileIdentity(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, []byte(p+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(a, filepath.Join(dir, "a.log.1")); err != nil {
		t.Fatal(err)
	}
	identify := func(path string) (fileID, uint64) {
		t.Helper()
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		return identityOf(t, f)
	}
	idA, nA := identify(a)
	idA1, nA1 := identify(filepath.Join(dir, "a.log.1"))
	idB, nB := identify(b)
	if idA != idA1 || nA != 2 || nA1 != 2 {
		t.Errorf("hard links: %v (%d links) and %v (%d links); want one identity with 2 links", idA, nA, idA1, nA1)
	}
	if idA == idB || nB != 1 {
		t.Errorf("a.log %v, b.log %v (%d links); want two identities, b.log with 1 link", idA, idB, nB)
	}
}
