package sidecar

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/internal/await"
)

// countingSource is fileSource("v1") counting its fetches.
type countingSource struct{ fetches atomic.Int32 }

func (c *countingSource) Fetch(ctx context.Context, have, dir string) (string, error) {
	c.fetches.Add(1)
	return fileSource("v1").Fetch(ctx, have, dir)
}

// runSyncerOK runs s until the returned stop is called, which waits for Run's end; Run must return nil.
func runSyncerOK(t *testing.T, s *Syncer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return func() { cancel(); wg.Wait() }
}

// syncsDone waits until s has made n syncs.
func syncsDone(t *testing.T, s *Syncer, n uint64) {
	t.Helper()
	await.True(t, "the syncs", 10*time.Second, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.syncs >= n
	})
}

// leftovers lists what a failed publish may leave in root: revision directories and version
// files, and the link's temporary name.
func leftovers(t *testing.T, root string) (revs, versions, tmpLinks int) {
	t.Helper()
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range ents {
		switch n := de.Name(); {
		case strings.HasSuffix(n, ".tmp"):
			tmpLinks++
		case strings.HasPrefix(n, revPrefix) && strings.HasSuffix(n, versionFile):
			versions++
		case strings.HasPrefix(n, revPrefix):
			revs++
		}
	}
	return revs, versions, tmpLinks
}

// TestSyncerLinkReplacedByDirectory: a directory put at the link's path, which a publish cannot
// replace, fails each sync without a fetch, counted as an error and logged once with the path,
// and is left as it is. The old code fetched the whole content anew at each sync into a new
// revision, failed to swap the link (rename: file exists), and left the revision and current.tmp
// behind: one full copy of the content per sync.
func TestSyncerLinkReplacedByDirectory(t *testing.T) {
	root := t.TempDir()
	src := &countingSource{}
	core, logs := observer.New(zap.WarnLevel)
	reg := prometheus.NewRegistry()
	s, err := NewSyncer(root, src, WithInterval(0), WithLogger(zap.New(core)), WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer runSyncerOK(t, s)()
	<-s.Ready()
	syncsDone(t, s, 1)
	link := filepath.Join(root, "current")
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(link, "x", "mine.txt")
	if err := os.MkdirAll(filepath.Dir(mine), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mine, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	fetched := src.fetches.Load()
	for i := range uint64(5) {
		s.Trigger()
		syncsDone(t, s, 2+i)
	}
	if n := src.fetches.Load() - fetched; n != 0 {
		t.Errorf("%d fetches with a directory at the link, want 0", n)
	}
	if revs, versions, tmps := leftovers(t, root); revs != 1 || versions != 1 || tmps != 0 {
		t.Errorf("%d revisions, %d version files, %d temporary links after 5 syncs, want 1, 1, 0", revs, versions, tmps)
	}
	if b, err := os.ReadFile(mine); err != nil || string(b) != "mine" {
		t.Errorf("the directory's file: %q, %v; want it left as it was", b, err)
	}
	var m dto.Metric
	if err := s.m.WithLabelValues("error").Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n != 5 {
		t.Errorf("%v syncs counted as errors, want 5", n)
	}
	s.mu.Lock()
	lastErr := s.lastErr
	s.mu.Unlock()
	if !strings.Contains(lastErr, link) {
		t.Errorf("last error %q does not name %s", lastErr, link)
	}
	if n := logs.FilterField(zap.String("link", link)).FilterMessageSnippet("not a symlink").Len(); n != 1 {
		t.Errorf("%d warnings naming the directory at the link, want 1; logs: %v", n, logs.All())
	}

	// Removed, the link is published again, and a directory there later is logged again.
	if err := os.RemoveAll(link); err != nil {
		t.Fatal(err)
	}
	s.Trigger()
	syncsDone(t, s, 7)
	if b, err := os.ReadFile(filepath.Join(link, "site.txt")); err != nil || string(b) != "v1" {
		t.Errorf("published site.txt = %q, %v; want v1", b, err)
	}
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(link, 0o755); err != nil {
		t.Fatal(err)
	}
	s.Trigger()
	syncsDone(t, s, 8)
	if n := logs.FilterField(zap.String("link", link)).FilterMessageSnippet("not a symlink").Len(); n != 2 {
		t.Errorf("%d warnings naming the directory at the link after it came back, want 2", n)
	}
}

// dirAtLinkSource fetches v1 and, while it fetches, makes a directory at the link's path: a
// directory that appears there after the sync looked, so that the publish's swap fails.
type dirAtLinkSource struct{ link string }

func (d dirAtLinkSource) Fetch(ctx context.Context, have, dir string) (string, error) {
	if err := os.Mkdir(d.link, 0o755); err != nil && !os.IsExist(err) {
		return "", err
	}
	return fileSource("v1").Fetch(ctx, have, dir)
}

// TestSyncerFailedPublishLeavesNothing: a publish that fails once the fetch directory was made the
// revision (here the link's swap) removes the revision, its version file and the temporary link.
// The old code left all three, at every sync.
func TestSyncerFailedPublishLeavesNothing(t *testing.T) {
	root := t.TempDir()
	s, err := NewSyncer(root, dirAtLinkSource{filepath.Join(root, "current")}, WithInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	defer runSyncerOK(t, s)()
	syncsDone(t, s, 1)
	s.mu.Lock()
	lastErr := s.lastErr
	s.mu.Unlock()
	if !strings.Contains(lastErr, "publish") {
		t.Errorf("last error %q, want the publish's", lastErr)
	}
	if revs, versions, tmps := leftovers(t, root); revs != 0 || versions != 0 || tmps != 0 {
		t.Errorf("%d revisions, %d version files, %d temporary links after a failed publish, want none", revs, versions, tmps)
	}
}

// TestSyncerVersionKeptExactly: a version with white space around it is published once, and found
// as it is by the next syncs and by a Run that starts on the root. The old code trimmed the
// version read back, so that a version as "v1 " never matched: every sync published it again and
// ran the hooks.
func TestSyncerVersionKeptExactly(t *testing.T) {
	for _, v := range []string{"v1", "v1 ", "v1\n", " v1\n\n"} {
		root := t.TempDir()
		for run := range 2 {
			var hooks atomic.Int32
			s, err := NewSyncer(root, fileSource(v), WithInterval(0), WithHooks(func(context.Context) error { hooks.Add(1); return nil }))
			if err != nil {
				t.Fatal(err)
			}
			stop := runSyncerOK(t, s)
			<-s.Ready()
			for i := range uint64(3) {
				s.Trigger()
				syncsDone(t, s, 2+i)
			}
			await.True(t, "the hooks", 10*time.Second, func() bool { return s.HookedVersion() == v })
			stop()
			s.mu.Lock()
			pub := s.published
			s.mu.Unlock()
			want := uint64(1)
			if run > 0 {
				want = 0 // found published
			}
			if pub != want || hooks.Load() != 1 {
				t.Errorf("version %q, run %d: published %d times, hooks run %d times; want %d and 1", v, run, pub, hooks.Load(), want)
			}
		}
	}
}

// TestSyncerReadsOldVersionFiles: a revision published by an earlier release, whose version file
// holds the version and a newline, is found with its version.
func TestSyncerReadsOldVersionFiles(t *testing.T) {
	root := t.TempDir()
	name := revName("v1", time.Now())
	if err := os.Mkdir(filepath.Join(root, name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, name+versionFile), []byte("v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(name, filepath.Join(root, "current")); err != nil {
		t.Fatal(err)
	}
	s, err := NewSyncer(root, fileSource("v1"), WithInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	stop := runSyncerOK(t, s)
	syncsDone(t, s, 1)
	stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.version != "v1" || s.published != 0 {
		t.Errorf("version %q, published %d; want v1 found, and nothing published", s.version, s.published)
	}
}
