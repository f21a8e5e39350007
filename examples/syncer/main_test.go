package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"net"
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

// TestBadFlags: a flag value the syncer cannot use, or one it would ignore, is a usage error (exit
// 2, naming the flag), found before it syncs anything; a failure while starting, such as a busy
// -http port, exits 1.
func TestBadFlags(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	const want = "syncer: want -root and exactly one of -repo and -url"
	const site = "http://127.0.0.1:1/site.tgz"
	cmdlinetest.TestExits(t, exec.Command(bin), []cmdlinetest.Exit{
		{Args: nil, Status: 2, Stderr: want},
		{Args: []string{"-root", root}, Status: 2, Stderr: want},
		{Args: []string{"-root", root, "-repo", "r", "-url", "u"}, Status: 2, Stderr: want},
		// The flag package stops at the first argument that is no flag: the flags after it were dropped.
		{Args: []string{"-root", root, "-url", site, "extra", "-interval", "0"}, Status: 2, Stderr: `syncer: unexpected arguments ["extra" "-interval" "0"]`},
		{Args: []string{"-root", root, "-url", "example.com/site.tgz"}, Status: 2, Stderr: `syncer: -url "example.com/site.tgz": want an http or https URL`},
		// An archive has no refs: -ref would be ignored.
		{Args: []string{"-root", root, "-url", site, "-ref", "v2"}, Status: 2, Stderr: "syncer: -ref: only with -repo"},
		{Args: []string{"-root", root, "-url", site, "-exec", ""}, Status: 2, Stderr: `syncer: -exec "": empty command`},
		{Args: []string{"-root", root, "-url", site, "-exec", "true", "-exec", " "}, Status: 2, Stderr: `syncer: -exec " ": empty command`},
		{Args: []string{"-root", root, "-url", site, "-http", "9090"}, Status: 2, Stderr: `syncer: -http "9090": want HOST:PORT`},
		{Args: []string{"-root", root, "-repo", "r", "-webhook", "ftp://example.com/"}, Status: 2, Stderr: `syncer: -webhook "ftp://example.com/": want an http or https URL`},
		{Args: []string{"-root", root, "-repo", "r", "-interval", "-1s"}, Status: 2, Stderr: "syncer: -interval -1s: want 0 or more"},
		{Args: []string{"-root", root, "-repo", "r", "-link", "a/b"}, Status: 2, Stderr: `syncer: sidecar: config WithLinkName: "a/b": want a plain name`},
		{Args: []string{"-root", root, "-url", site, "-http", busy.Addr().String()}, Status: 1, Stderr: "syncer: listen tcp " + busy.Addr().String()},
	})
}

// TestHelpAndUnknownFlag: -h prints the usage and exits 0; an unknown flag exits 2 with the flag
// package's message, as flag.ExitOnError would.
func TestHelpAndUnknownFlag(t *testing.T) {
	cmdlinetest.TestHelpAndBadFlag(t, "-root", exec.Command(bin))
}
