//go:build !unix

package workqueue

import (
	"errors"
	"os"
	"testing"
)

// Without work-dir locks a sweep removes nothing and says why; work directories are still made
// and removed.
func TestWorkDirsWithoutLocks(t *testing.T) {
	root := t.TempDir()
	dir, release, err := makeWorkDir(root, "a/b")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := sweepWorkDirs(root); n != 0 || !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("sweepWorkDirs = %d, %v; want 0 and an error wrapping errors.ErrUnsupported", n, err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("work dir after a sweep: %v", err)
	}
	release()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("work dir after release: %v, want it removed", err)
	}
}
