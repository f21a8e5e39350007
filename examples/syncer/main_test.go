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
		// A port no request can reach was retried for as long as the syncer ran.
		{Args: []string{"-root", root, "-url", "http://127.0.0.1:99999/site.tgz"}, Status: 2, Stderr: `syncer: -url "http://127.0.0.1:99999/site.tgz": port "99999": want a number from 1 to 65535`},
		{Args: []string{"-root", root, "-url", site, "-webhook", "http://127.0.0.1:0/"}, Status: 2, Stderr: `syncer: -webhook "http://127.0.0.1:0/": port "0": want a number from 1 to 65535`},
		// An archive has no refs: -ref would be ignored.
		{Args: []string{"-root", root, "-url", site, "-ref", "v2"}, Status: 2, Stderr: "syncer: -ref: only with -repo"},
		{Args: []string{"-root", root, "-url", site, "-exec", ""}, Status: 2, Stderr: `syncer: -exec "": empty command`},
		{Args: []string{"-root", root, "-url", site, "-exec", "true", "-exec", " "}, Status: 2, Stderr: `syncer: -exec " ": empty command`},
		{Args: []string{"-root", root, "-url", site, "-http", "9090"}, Status: 2, Stderr: `syncer: -http "9090": want HOST:PORT`},
		// A port no listener can have is a usage error, found before anything runs (it was exit 1,
		// from the listen after the first sync).
		{Args: []string{"-root", root, "-url", site, "-http", ":99999"}, Status: 2, Stderr: `syncer: -http ":99999": port "99999": want a number from 0 to 65535`},
		{Args: []string{"-root", root, "-url", site, "-http", "127.0.0.1:no-such-service"}, Status: 2, Stderr: `syncer: -http "127.0.0.1:no-such-service": port "no-such-service": want a number from 0 to 65535 or a known service name (such as "http"); it is neither`},
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

// fetchDirs lists the names of root's entries that start with ".fetch-".
func fetchDirs(t *testing.T, root string) []string {
	t.Helper()
	des, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		if strings.HasPrefix(de.Name(), ".fetch-") {
			names = append(names, de.Name())
		}
	}
	return names
}

// TestKilledMidFetchLeftoverRemovedOnRestart: a syncer SIGKILLed while it extracts an archive
// leaves its .fetch- directory behind on the volume; the next start removes it, and the published
// content is what it was. The old code left every such directory in the root for good.
func TestKilledMidFetchLeftoverRemovedOnRestart(t *testing.T) {
	v1 := tgz(t, "v1")
	var mu sync.Mutex
	requests := 0
	stalled := make(chan struct{}) // closed when the test is done with the stalled answer
	defer close(stalled)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		n := requests
		mu.Unlock()
		if n != 2 {
			w.Write(v1)
			return
		}
		// The second fetch: an uncompressed archive of one big file, cut off after its first
		// block, so the syncer is killed with the file half written in its fetch directory.
		tw := tar.NewWriter(w)
		if err := tw.WriteHeader(&tar.Header{Name: "site.txt", Mode: 0o644, Size: 1 << 20, Typeflag: tar.TypeReg}); err != nil {
			return
		}
		tw.Write(bytes.Repeat([]byte("x"), 4096))
		tw.Flush()
		w.(http.Flusher).Flush()
		select {
		case <-stalled:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	root := filepath.Join(t.TempDir(), "root")
	site := filepath.Join(root, "current", "site.txt")
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "-root", root, "-url", srv.URL, "-interval", "0")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	cmd := start()
	await.True(t, "v1 published", 30*time.Second, func() bool { data, _ := os.ReadFile(site); return string(data) == "v1" })
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var leftover string
	await.True(t, "the second fetch half written", 30*time.Second, func() bool {
		for _, name := range fetchDirs(t, root) {
			if fi, err := os.Stat(filepath.Join(root, name, "site.txt")); err == nil && fi.Size() >= 4096 {
				leftover = name
				return true
			}
		}
		return false
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if _, err := os.Stat(filepath.Join(root, leftover)); err != nil {
		t.Fatalf("the killed fetch's directory: %v, want it left behind", err)
	}
	// The sweep removes only what was not modified for 10 minutes (a fetch on another node of an
	// NFS volume holds no lock seen here): the syncer was killed that long ago.
	long := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(root, leftover), long, long); err != nil {
		t.Fatal(err)
	}

	cmd = start()
	await.True(t, "the restarted syncer's first fetch", 30*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return requests >= 3 })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
	if names := fetchDirs(t, root); len(names) != 0 {
		t.Errorf("fetch directories left in the root after a restart: %q (the killed one: %s)", names, leftover)
	}
	if data, err := os.ReadFile(site); err != nil || string(data) != "v1" {
		t.Errorf("published site.txt = %q, %v; want v1", data, err)
	}
}

// A second syncer on a root a running one holds exits 1 at once, naming the root and the holder's
// pid, and leaves the first's content alone: it used to run, and its publish pruned the first's
// revision, leaving the first's link pointing at nothing.
func TestSecondSyncerOnARootExits(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(tgz(t, strings.TrimPrefix(r.URL.Path, "/")))
	}))
	defer srv.Close()
	root := filepath.Join(t.TempDir(), "root")
	first := exec.Command(bin, "-root", root, "-url", srv.URL+"/first", "-link", "first", "-interval", "0")
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Process.Kill(); _ = first.Wait() }()
	site := func(link string) string { b, _ := os.ReadFile(filepath.Join(root, link, "site.txt")); return string(b) }
	await.True(t, "the first syncer's publish", 30*time.Second, func() bool { return site("first") == "first" })

	second := exec.Command(bin, "-root", root, "-url", srv.URL+"/second", "-link", "second", "-interval", "0")
	var stderr strings.Builder
	second.Stderr = &stderr
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- second.Wait() }()
	select {
	case err := <-ended:
		want := fmt.Sprintf("syncer: sidecar: syncer root %s: in use by another Syncer: pid %d host ", root, first.Process.Pid)
		if code := second.ProcessState.ExitCode(); code != 1 || !strings.HasPrefix(stderr.String(), want) {
			t.Errorf("second syncer: %v, stderr %q; want exit 1 and %q...", err, stderr.String(), want)
		}
	case <-time.After(10 * time.Second):
		_ = second.Process.Kill()
		<-ended
		t.Errorf("a second syncer on the root ran for 10s (first's site now %q)", site("first"))
	}
	if got := site("first"); got != "first" {
		t.Errorf("first/site.txt = %q after the second syncer, want first", got)
	}
}
