package sidecar_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podblocks/podblocks/sidecar"
)

// A watched directory (a path, or the directory of a watched file) removed or renamed away and made
// anew is watched again as soon as it is back: with the rescan an hour away, a change in it is seen
// at once. Its watch used to be lost with the directory it was on, and never added again: only the
// rescan saw what changed in the new directory.
func TestReloaderWatchesADirectoryMadeAnew(t *testing.T) {
	conf := func(d string) string { return filepath.Join(d, "conf") }
	write := func(v string) func(string) error {
		return func(d string) error { return os.WriteFile(filepath.Join(conf(d), "app.conf"), []byte(v), 0o644) }
	}
	anew := func(d string) error { return os.Mkdir(conf(d), 0o755) }
	removed := func(d string) error { return os.RemoveAll(conf(d)) }
	renamed := func(d string) error { return os.Rename(conf(d), conf(d)+".old") }
	for _, tc := range []struct {
		name    string
		watched string // under the test's directory
		steps   []func(dir string) error
		reloads []uint64 // after each step
	}{
		{name: "watched directory removed", watched: "conf",
			steps: []func(string) error{removed, anew, write("v1"), write("v2")}, reloads: []uint64{1, 2, 3, 4}},
		{name: "watched directory renamed away", watched: "conf",
			steps: []func(string) error{renamed, anew, write("v1"), write("v2")}, reloads: []uint64{1, 2, 3, 4}},
		// The file's absence is no change while its directory comes back: the file is.
		{name: "watched file's directory removed", watched: "conf/app.conf",
			steps: []func(string) error{removed, anew, write("v1"), write("v2")}, reloads: []uint64{1, 1, 2, 3}},
		{name: "watched file's directory renamed away", watched: "conf/app.conf",
			steps: []func(string) error{renamed, anew, write("v1"), write("v2")}, reloads: []uint64{1, 1, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "conf"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "conf", "app.conf"), []byte("v0"), 0o644); err != nil {
				t.Fatal(err)
			}
			var n atomic.Uint64
			r, err := sidecar.NewReloader([]string{filepath.Join(dir, tc.watched)}, func(context.Context) error { n.Add(1); return nil },
				sidecar.WithPollInterval(time.Hour), sidecar.WithDebounce(20*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			start(t, r)
			for i, step := range tc.steps {
				if err := step(dir); err != nil {
					t.Fatal(err)
				}
				want := tc.reloads[i]
				awaitReloads(t, &n, want, fmt.Sprintf("step %d", i+1))
				// A step that is no change must not be taken for one a little later either.
				if i+1 < len(tc.steps) && tc.reloads[i+1] == want {
					time.Sleep(200 * time.Millisecond)
					if got := n.Load(); got != want {
						t.Fatalf("step %d: %d reloads, want %d", i+1, got, want)
					}
				}
			}
		})
	}
}

// One directory needed by two paths, one of them through a symlink, is watched for both: when the
// symlink moves on to another directory, the directory it left is still watched for the other path.
// inotify has one watch per directory, which the watcher knew by the first path added (the link);
// the swap removed the watch by that path, and with it the other path's: writes to it were seen by
// the rescan only.
func TestReloaderKeepsAWatchSharedWithALinkThatMovedOn(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"data/a", "data/b"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "data", "a", "x.conf")
	if err := os.WriteFile(conf, []byte("v0"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("data/a", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	var n atomic.Uint64
	r, err := sidecar.NewReloader([]string{filepath.Join(dir, "link"), conf}, func(context.Context) error { n.Add(1); return nil },
		sidecar.WithPollInterval(time.Hour), sidecar.WithDebounce(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	if err := os.Symlink("data/b", filepath.Join(dir, "link.new")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "link.new"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	awaitReloads(t, &n, 1, "link swap")
	for i, v := range []string{"v1", "v2", "v3"} {
		if err := os.WriteFile(conf, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
		awaitReloads(t, &n, uint64(i+2), "write of "+v)
	}
}

// versionSource publishes site.txt and sub/site.txt, with the content of the version it holds.
type versionSource struct{ v atomic.Value }

func (s *versionSource) Fetch(_ context.Context, have, dir string) (string, error) {
	v := s.v.Load().(string)
	if v == have {
		return have, nil
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "site.txt"), []byte(v), 0o644); err != nil {
		return "", err
	}
	return v, os.WriteFile(filepath.Join(dir, "site.txt"), []byte(v), 0o644)
}

// A Reloader watching a Syncer's link, a file under it, or a file in a directory under it, sees each
// publish at once, with the rescan an hour away. The link is a symlink to a directory: its watch was
// on the revision the link pointed at when Run started, which nothing changes, and a publish (a
// rename of a new link over it in the root) was seen by the rescan only. A path in a directory
// under the link had its directory watched in the old revision, and the root not at all.
func TestReloaderSeesSyncerPublishes(t *testing.T) {
	for _, watched := range []string{"current", "current/site.txt", "current/sub/site.txt", "current/sub"} {
		t.Run(watched, func(t *testing.T) {
			root := t.TempDir()
			src := &versionSource{}
			src.v.Store("v1")
			s, err := sidecar.NewSyncer(root, src, sidecar.WithInterval(0))
			if err != nil {
				t.Fatal(err)
			}
			start(t, s)
			var n atomic.Uint64
			r, err := sidecar.NewReloader([]string{filepath.Join(root, watched)}, func(context.Context) error { n.Add(1); return nil },
				sidecar.WithPollInterval(time.Hour), sidecar.WithDebounce(20*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			start(t, r)
			for i, v := range []string{"v2", "v3", "v4"} {
				src.v.Store(v)
				s.Trigger()
				awaitReloads(t, &n, uint64(i+1), "publish of "+v)
			}
		})
	}
}

// awaitReloads waits (5s) until n, the reloads counted, is want, and fails the test if it is not.
func awaitReloads(t *testing.T, n *atomic.Uint64, want uint64, after string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for n.Load() < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := n.Load(); got != want {
		t.Fatalf("%s: %d reloads in 5s (rescan an hour away), want %d", after, got, want)
	}
}

// TestReloaderWatchesADirectoryMadeAnewWithItsInode: a directory removed and made again at once
// often gets the old one's inode number (ext4 reuses it), so comparing the directory with the one
// watched cannot tell that the watch went with the old one; each write after a remake must still
// be seen at once. The old code saw the remake's write and none after it (rescan an hour away).
func TestReloaderWatchesADirectoryMadeAnewWithItsInode(t *testing.T) {
	d := t.TempDir()
	conf := filepath.Join(d, "conf")
	if err := os.Mkdir(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(conf, "x.conf")
	if err := os.WriteFile(file, []byte("v0"), 0o644); err != nil {
		t.Fatal(err)
	}
	var n atomic.Uint64
	r, err := sidecar.NewReloader([]string{file}, func(context.Context) error { n.Add(1); return nil },
		sidecar.WithPollInterval(time.Hour), sidecar.WithDebounce(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	want := uint64(0)
	reused := 0
	for i := 1; i <= 10; i++ {
		before, err := os.Stat(conf)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(conf); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(conf, 0o755); err != nil {
			t.Fatal(err)
		}
		after, err := os.Stat(conf)
		if err != nil {
			t.Fatal(err)
		}
		if os.SameFile(before, after) {
			reused++
		}
		if err := os.WriteFile(file, []byte(fmt.Sprint("a", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		want++
		awaitReloads(t, &n, want, fmt.Sprint("the write in remake ", i))
		time.Sleep(30 * time.Millisecond) // past the debounce: the next write is a change of its own
		if err := os.WriteFile(file, []byte(fmt.Sprint("b", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		want++
		awaitReloads(t, &n, want, fmt.Sprint("a write after remake ", i))
	}
	t.Logf("the remade directory had the old one's inode number %d times of 10", reused)
}

// TestReloaderFollowsASymlinkToAFileElsewhere: a watched path that is a symlink (or a chain of
// them) to a file in another directory sees writes to that file at once, in place or by a rename
// over it, also after the chain's middle link moved to another target. The old code watched the
// directories holding the links, not the final target's: such writes waited for the rescan.
func TestReloaderFollowsASymlinkToAFileElsewhere(t *testing.T) {
	d := t.TempDir()
	for _, s := range []string{"etc", "l", "data", "data2"} {
		if err := os.Mkdir(filepath.Join(d, s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(d, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, name string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(d, name)); err != nil {
			t.Fatal(err)
		}
	}
	write("data/real.conf", "v0")
	write("data2/real.conf", "w0")
	link("../data/real.conf", "l/link")
	link("../l/link", "etc/app.conf") // etc/app.conf -> l/link -> data/real.conf
	var n atomic.Uint64
	r, err := sidecar.NewReloader([]string{filepath.Join(d, "etc/app.conf")}, func(context.Context) error { n.Add(1); return nil },
		sidecar.WithPollInterval(time.Hour), sidecar.WithDebounce(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	write("data/real.conf", "v1")
	awaitReloads(t, &n, 1, "an in-place write of the chain's target")
	link("../data2/real.conf", "l/link.new")
	if err := os.Rename(filepath.Join(d, "l/link.new"), filepath.Join(d, "l/link")); err != nil {
		t.Fatal(err)
	}
	awaitReloads(t, &n, 2, "the middle link moved to another file")
	write("data2/real.conf.tmp", "w1")
	if err := os.Rename(filepath.Join(d, "data2/real.conf.tmp"), filepath.Join(d, "data2/real.conf")); err != nil {
		t.Fatal(err)
	}
	awaitReloads(t, &n, 3, "a rename over the new target")
}
