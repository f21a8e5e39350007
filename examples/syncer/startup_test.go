package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/cmdline/cmdlinetest"
	"github.com/podblocks/podblocks/internal/freeport"
)

// TestMissingBinaryIsAUsageError: -repo without git in PATH, or -exec without sh (the FROM scratch
// image has neither), exits 2 at start, naming the flag and the binary. The old syncer ran on,
// logging the failed git, or retrying the failing hook, at every sync.
func TestMissingBinaryIsAUsageError(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PATH="+t.TempDir()) // an empty directory
	cmdlinetest.TestExits(t, cmd, []cmdlinetest.Exit{
		{Args: []string{"-root", root, "-repo", "https://example.com/site.git", "-interval", "0"}, Status: 2,
			Stderr: "syncer: -repo needs the git binary, which is not in PATH (the syncer image has none: use -url)"},
		{Args: []string{"-root", root, "-url", "http://127.0.0.1:1/site.tgz", "-interval", "0", "-exec", "true"}, Status: 2,
			Stderr: "syncer: -exec needs the sh binary, which is not in PATH (the syncer image has none: use -url)"},
	})
}

// TestReadyzAndMetrics: GET /readyz on -http answers 503 until content is published, 200 after;
// -metrics serves the Syncer's metrics. The old syncer had neither.
func TestReadyzAndMetrics(t *testing.T) {
	var up atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		w.Write(tgz(t, "v1"))
	}))
	defer srv.Close()
	root := filepath.Join(t.TempDir(), "root")
	addr, metrics := freeport.TCP(t), freeport.TCP(t)
	cmd := exec.Command(bin, "-root", root, "-url", srv.URL, "-interval", "0", "-http", addr, "-metrics", metrics)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	await.True(t, "the syncer's first (failed) sync", 30*time.Second, func() bool {
		_, body := get("http://" + metrics + "/metrics")
		return strings.Contains(body, `podblocks_sidecar_syncer_syncs_total{result="error"} 1`)
	})
	if code, body := get("http://" + addr + "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz before a publish: %d %q, want 503", code, body)
	}
	up.Store(true)
	await.True(t, "POST /sync", 30*time.Second, func() bool {
		resp, err := http.Post("http://"+addr+"/sync", "", nil)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusAccepted
	})
	await.True(t, "GET /readyz 200 after the publish", 30*time.Second, func() bool {
		code, _ := get("http://" + addr + "/readyz")
		return code == http.StatusOK
	})
	if _, body := get("http://" + metrics + "/metrics"); !strings.Contains(body, `podblocks_sidecar_syncer_syncs_total{result="published"} 1`) {
		t.Errorf("GET /metrics after the publish:\n%s\nwant podblocks_sidecar_syncer_syncs_total{result=\"published\"} 1", body)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
}
