package sidecar_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/sidecar"
)

func gitCmd(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

func commit(t *testing.T, repo, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(repo, "site.txt"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	gitCmd(t, repo, "add", "site.txt")
	gitCmd(t, repo, "commit", "-q", "-m", content)
}

// hookLog records, in order, what a hook saw under the published link.
type hookLog struct {
	mu   sync.Mutex
	seen []string
}

func (h *hookLog) hook(link string) sidecar.Action {
	return func(context.Context) error {
		data, err := os.ReadFile(filepath.Join(link, "site.txt"))
		if err != nil {
			return err
		}
		h.mu.Lock()
		h.seen = append(h.seen, string(data))
		h.mu.Unlock()
		return nil
	}
}

func (h *hookLog) last() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.seen) == 0 {
		return ""
	}
	return h.seen[len(h.seen)-1]
}

func (h *hookLog) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.seen...)
}

func TestSyncerGitPublishesAtomicallyAndRunsHooks(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git binary not installed (apt-get install git)")
	}
	repo := t.TempDir()
	gitCmd(t, repo, "init", "-q", "-b", "main")
	commit(t, repo, "v1")
	root := t.TempDir()
	link := filepath.Join(root, "current")
	var log hookLog
	var order []string
	var omu sync.Mutex
	second := func(context.Context) error { omu.Lock(); order = append(order, "second"); omu.Unlock(); return nil }
	first := func(ctx context.Context) error {
		omu.Lock()
		order = append(order, "first")
		omu.Unlock()
		return log.hook(link)(ctx)
	}
	s, err := sidecar.NewSyncer(root, &sidecar.GitSource{Repo: repo, Ref: "main"},
		sidecar.WithInterval(time.Hour), sidecar.WithHooks(first, second))
	if err != nil {
		t.Fatal(err)
	}
	start(t, s)
	waitUntil(t, "hook for v1", 30*time.Second, func() bool { return log.last() == "v1" })

	commit(t, repo, "v2")
	s.Trigger()
	waitUntil(t, "hook for v2", 30*time.Second, func() bool { return log.last() == "v2" })

	commit(t, repo, "v3")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/sync", nil))
	if rec.Code != http.StatusAccepted {
		t.Errorf("POST /sync = %d", rec.Code)
	}
	waitUntil(t, "hook for v3", 30*time.Second, func() bool { return log.last() == "v3" })
	waitUntil(t, "hooks done", 10*time.Second, func() bool { return s.HookedVersion() == s.Version() })

	target, err := os.Readlink(link)
	if err != nil || !strings.HasPrefix(target, ".rev-") {
		t.Errorf("link -> %q, %v: want a relative .rev- directory", target, err)
	}
	if diff := cmp.Diff([]string{"v1", "v2", "v3"}, log.all()); diff != "" {
		t.Errorf("content seen by hooks (-want +got):\n%s", diff)
	}
	omu.Lock()
	defer omu.Unlock()
	if diff := cmp.Diff([]string{"first", "second", "first", "second", "first", "second"}, order); diff != "" {
		t.Errorf("hook order (-want +got):\n%s", diff)
	}
}

// tarball builds a tar.gz holding site.txt (and extra entries).
func tarball(t *testing.T, content string, extra ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: "site.txt", Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(content))
	for _, h := range extra {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

type archiveServer struct {
	mu   sync.Mutex
	body []byte
	etag string
	gets atomic.Int32
	n304 atomic.Int32
}

func (a *archiveServer) set(body []byte, etag string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.body, a.etag = body, etag
}

func (a *archiveServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gets.Add(1)
	if a.etag != "" {
		if r.Header.Get("If-None-Match") == a.etag {
			a.n304.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", a.etag)
	}
	w.Write(a.body)
}

func TestSyncerHTTPArchive(t *testing.T) {
	as := &archiveServer{}
	as.set(tarball(t, "a1"), `"e1"`)
	srv := httptest.NewServer(as)
	defer srv.Close()
	root := t.TempDir()
	var log hookLog
	s, err := sidecar.NewSyncer(root, &sidecar.HTTPArchiveSource{URL: srv.URL, Client: srv.Client()},
		sidecar.WithInterval(10*time.Millisecond), sidecar.WithHooks(log.hook(filepath.Join(root, "current"))))
	if err != nil {
		t.Fatal(err)
	}
	start(t, s)
	waitUntil(t, "a1", 20*time.Second, func() bool { return log.last() == "a1" })
	waitUntil(t, "a 304", 20*time.Second, func() bool { return as.n304.Load() >= 2 })

	// A bad archive is refused; the published content stays.
	as.set(tarball(t, "evil", &tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o644}), `"e2"`)
	waitUntil(t, "bad archive fetched", 20*time.Second, func() bool { return as.gets.Load() >= 6 })
	if _, err := os.Stat(filepath.Join(filepath.Dir(root), "escape")); err == nil {
		t.Fatal("archive wrote outside the root")
	}
	if got := s.Version(); got != `"e1"` {
		t.Errorf("version after a bad archive = %s, want \"e1\"", got)
	}
	// Without ETag the version is the body's hash.
	as.set(tarball(t, "a3"), "")
	waitUntil(t, "a3", 20*time.Second, func() bool { return log.last() == "a3" })
	if v := s.Version(); !strings.HasPrefix(v, "sha256:") {
		t.Errorf("version = %q, want sha256:...", v)
	}
	if diff := cmp.Diff([]string{"a1", "a3"}, log.all()); diff != "" {
		t.Errorf("hooks (-want +got):\n%s", diff)
	}
}

// TestSyncerHooksRunAtStartupAndRetry restarts a Syncer over published content whose source is now
// unreachable: the hooks still run for the content on disk, retried until they succeed.
func TestSyncerHooksRunAtStartupAndRetry(t *testing.T) {
	as := &archiveServer{}
	as.set(tarball(t, "first"), `"x1"`)
	srv := httptest.NewServer(as)
	root := t.TempDir()
	link := filepath.Join(root, "current")
	var log hookLog
	s, err := sidecar.NewSyncer(root, &sidecar.HTTPArchiveSource{URL: srv.URL, Client: srv.Client()},
		sidecar.WithInterval(0), sidecar.WithHooks(log.hook(link)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitUntil(t, "first publish", 20*time.Second, func() bool { return log.last() == "first" })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	srv.Close()

	var calls atomic.Int32
	var log2 hookLog
	flaky := func(ctx context.Context) error {
		if calls.Add(1) <= 2 {
			return errors.New("app not ready")
		}
		return log2.hook(link)(ctx)
	}
	s2, err := sidecar.NewSyncer(root, &sidecar.HTTPArchiveSource{URL: srv.URL}, sidecar.WithInterval(0),
		sidecar.WithHooks(flaky), sidecar.WithBackoff(func(int) time.Duration { return 5 * time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	start(t, s2)
	waitUntil(t, "startup hook", 20*time.Second, func() bool { return log2.last() == "first" })
	if got := calls.Load(); got != 3 {
		t.Errorf("hook calls = %d, want 3 (2 failures, then success)", got)
	}
	if got := s2.Version(); got != `"x1"` {
		t.Errorf("version found at startup = %s", got)
	}
}

func TestNewSyncerValidates(t *testing.T) {
	src := &sidecar.HTTPArchiveSource{URL: "http://127.0.0.1:1/"}
	for name, f := range map[string]func() error{
		"empty root": func() error { _, err := sidecar.NewSyncer("", src); return err },
		"nil source": func() error { _, err := sidecar.NewSyncer("/tmp/x", nil); return err },
		"bad link":   func() error { _, err := sidecar.NewSyncer("/tmp/x", src, sidecar.WithLinkName("a/b")); return err },
	} {
		var ce *sidecar.ConfigError
		if err := f(); !errors.As(err, &ce) {
			t.Errorf("%s: err = %v, want *ConfigError", name, err)
		}
	}
}
