package sidecar_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/podblocks/podblocks/sidecar"
	"time"
)

// TestSyncerSweepsOnlyDeadFetchDirs: Run removes the fetch directories of its root that no fetch
// holds locked and that were not modified for long (left by a Syncer killed mid-fetch), without
// following a symlink inside one, and leaves alone a fetch directory a live fetch holds, one
// modified lately (a live fetch on another node of a network file system: the sweep of e75d1f8
// removed it), one named as os.MkdirTemp names them (an older Syncer's, which never locks: the
// sweep of e75d1f8 removed it), a symlink or a file with a fetch directory's name, a name
// mkdirFetch does not give, and the revisions.
func TestSyncerSweepsOnlyDeadFetchDirs(t *testing.T) {
	base := t.TempDir()
	root, outside := filepath.Join(base, "volume"), filepath.Join(base, "outside")
	keep := filepath.Join(outside, "keep")
	dead := filepath.Join(root, ".fetch-dead100000000")
	held := filepath.Join(root, ".fetch-held200000000")
	linked := filepath.Join(root, ".fetch-link300000000")
	file := filepath.Join(root, ".fetch-file400000000")
	notOurs := filepath.Join(root, ".fetch-NotOurs000000")
	// os.MkdirTemp's, as the first Syncers made them and never locked: one may still be fetching
	// into it during a rolling update, however old it looks.
	oldStyle := filepath.Join(root, ".fetch-1234567890")
	// Unlocked and recently modified: a live fetch on another node (flock is local on NFS).
	young := filepath.Join(root, ".fetch-young0000000")
	for _, err := range []error{
		os.MkdirAll(filepath.Join(dead, "sub"), 0o755), os.MkdirAll(outside, 0o755), os.Mkdir(held, 0o755),
		os.Mkdir(notOurs, 0o755), os.Mkdir(oldStyle, 0o700), os.Mkdir(young, 0o755),
		os.WriteFile(keep, []byte("k"), 0o644), os.WriteFile(filepath.Join(dead, "site.txt"), []byte("half"), 0o644),
		os.Symlink(outside, filepath.Join(dead, "sub", "out")), os.Symlink(outside, linked),
		os.WriteFile(file, []byte("f"), 0o644),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-time.Hour)
	for _, p := range []string{dead, held, linked, notOurs, oldStyle} {
		if err := os.Chtimes(p, long, long); err != nil {
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

	for _, gone := range []string{dead} {
		if _, err := os.Lstat(gone); !os.IsNotExist(err) {
			t.Errorf("%s: %v, want it removed (no fetch holds it)", gone, err)
		}
	}
	for _, p := range []string{held, linked, file, notOurs, oldStyle, young, keep, filepath.Join(root, target)} {
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

// vanishingSource is a fetch whose directory another Syncer removes midway (an older version's
// sweep, or a sweep on another node), after which the fetch makes the directory anew, as
// os.MkdirAll of an entry's parents did, and writes the rest of the content there.
type vanishingSource struct{}

func (vanishingSource) Fetch(_ context.Context, have, dir string) (string, error) {
	if have != "" {
		return have, nil
	}
	if err := os.WriteFile(filepath.Join(dir, "first.txt"), []byte("1"), 0o644); err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		return "", err
	}
	return "v1", os.WriteFile(filepath.Join(dir, "sub", "second.txt"), []byte("2"), 0o644)
}

// TestSyncerDoesNotPublishARemovedFetchDir: a fetch whose directory was removed and made anew at
// its path fails instead of publishing the incomplete tree (the old code published it).
func TestSyncerDoesNotPublishARemovedFetchDir(t *testing.T) {
	root := t.TempDir()
	s, err := sidecar.NewSyncer(root, vanishingSource{}, sidecar.WithInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitUntil(t, "a sync", 10*time.Second, func() bool { return statusRow(s, "syncs") != "0" })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v := s.Version(); v != "" {
		t.Errorf("published %q, want nothing published", v)
	}
	if _, err := os.Lstat(filepath.Join(root, "current")); !os.IsNotExist(err) {
		t.Errorf("link: %v, want none", err)
	}
	if e := statusRow(s, "last error"); !strings.Contains(e, "removed while fetching") {
		t.Errorf("last error %q, want the fetch directory's removal", e)
	}
}
