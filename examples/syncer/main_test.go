package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/cmdline/cmdlinetest"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/internal/testbin"
)

var bin string

func TestMain(m *testing.M) { testbin.Main(m, "syncer", &bin) }

func tgz(t *testing.T, content string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: "site.txt", Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(content))
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestSyncsArchiveRunsHooksOnSignalAndHTTP(t *testing.T) {
	var mu sync.Mutex
	body := tgz(t, "v1")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Write(body)
	}))
	defer srv.Close()
	set := func(s string) { mu.Lock(); body = tgz(t, s); mu.Unlock() }

	dir := t.TempDir()
	root, out := filepath.Join(dir, "root"), filepath.Join(dir, "hook.out")
	addr := freeport.TCP(t)
	cmd := exec.Command(bin, "-root", root, "-url", srv.URL, "-interval", "0", "-http", addr,
		"-exec", fmt.Sprintf("cat %s/current/site.txt >> %s; echo >> %s", root, out, out))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	seen := func() string { data, _ := os.ReadFile(out); return strings.ReplaceAll(string(data), "\n", " ") }
	await.True(t, "hook for v1", 30*time.Second, func() bool { return seen() == "v1 " })

	set("v2")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	await.True(t, "hook for v2 after SIGHUP", 30*time.Second, func() bool { return seen() == "v1 v2 " })

	set("v3")
	await.True(t, "POST /sync", 30*time.Second, func() bool {
		resp, err := http.Post("http://"+addr+"/sync", "", nil)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusAccepted
	})
	await.True(t, "hook for v3 after POST", 30*time.Second, func() bool { return seen() == "v1 v2 v3 " })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{}, {"-root", "/tmp/x"}, {"-root", "/tmp/x", "-repo", "r", "-url", "u"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "syncer:") {
			t.Errorf("syncer %v: err %v, output %q; want a failure with a reason", args, err, out)
		}
	}
}

// TestHelpAndUnknownFlag: -h prints the usage and exits 0; an unknown flag exits 2 with the flag
// package's message, as flag.ExitOnError would.
func TestHelpAndUnknownFlag(t *testing.T) {
	cmdlinetest.TestHelpAndBadFlag(t, "-root", exec.Command(bin))
}
