package sidecar_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestSyncerSweepsOnlyDeadFetchDirs: Run removes the fetch directories of its root that no fetch
// holds locked (left by a Syncer killed mid-fetch; the old code kept them all), without following a
// symlink inside one, and leaves alone a fetch directory a live fetch holds, a symlink or a file
// with a fetch directory's name, a name mkdirFetch does not give, and the revisions.
func TestSyncerSweepsOnlyDeadFetchDirs(t *testing.T) {
	base := t.TempDir()
	root, outside := filepath.Join(base, "volume"), filepath.Join(base, "outside")
	keep := filepath.Join(outside, "keep")
	dead := filepath.Join(root, ".fetch-dead1")
	held := filepath.Join(root, ".fetch-held2")
	linked := filepath.Join(root, ".fetch-link3")
	file := filepath.Join(root, ".fetch-file4")
	notOurs := filepath.Join(root, ".fetch-NotOurs")
	oldStyle := filepath.Join(root, ".fetch-1234567890") // os.MkdirTemp's, as the first Syncer made them
	for _, err := range []error{
		os.MkdirAll(filepath.Join(dead, "sub"), 0o755), os.MkdirAll(outside, 0o755), os.Mkdir(held, 0o755),
		os.Mkdir(notOurs, 0o755), os.Mkdir(oldStyle, 0o700),
		os.WriteFile(keep, []byte("k"), 0o644), os.WriteFile(filepath.Join(dead, "site.txt"), []byte("half"), 0o644),
		os.Symlink(outside, filepath.Join(dead, "sub", "out")), os.Symlink(outside, linked),
		os.WriteFile(file, []byte("f"), 0o644),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	// A live fetch holds its directory locked (another open file description, as another process's).
	f, err := os.Open(held)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	link := publishV1(t, root)
	target, err := os.Readlink(link)
	if err != nil {
		t.Fatal(err)
	}
	// The Syncer runs again over its own revision, which must stay.
	link = publishV1(t, root)

	for _, gone := range []string{dead, oldStyle} {
		if _, err := os.Lstat(gone); !os.IsNotExist(err) {
			t.Errorf("%s: %v, want it removed (no fetch holds it)", gone, err)
		}
	}
	for _, p := range []string{held, linked, file, notOurs, keep, filepath.Join(root, target)} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v, want it left alone", p, err)
		}
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "k" {
		t.Errorf("file outside the root, reached through symlinks: %q, %v; want it untouched", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(link, "site.txt")); err != nil || string(b) != "v1" {
		t.Errorf("published site.txt = %q, %v; want v1", b, err)
	}
}
