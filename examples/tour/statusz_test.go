package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chromium finds a headless-capable Chromium, or "".
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestStatuszInBrowser runs the tour with -serve, loads /statusz in a real headless Chromium, checks
// the rendered DOM for each section, and saves a screenshot (to $PODBLOCKS_ARTIFACTS when set, else
// the test's temp dir).
func TestStatuszInBrowser(t *testing.T) {
	browser := chromium()
	if browser == "" {
		t.Skip("chromium not installed (Debian package chromium; .ci/run installs it): skipping the real-browser /statusz test")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	done := make(chan struct{})
	var code int
	var tourErr error
	go func() {
		defer close(done)
		code, tourErr = tour(ctx, &out, acts(), 30*time.Second, addr, nil)
	}()
	defer func() {
		cancel()
		<-done
		if tourErr != nil || code != 0 {
			t.Errorf("tour -serve = %d, %v\n%s", code, tourErr, out.String())
		}
	}()
	base := "http://" + addr
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("tour -serve never became ready")
		}
	}

	profile := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cctx, ccancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer ccancel()
		all := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			"--user-data-dir=" + profile, "--no-first-run"}, args...)
		cmd := exec.CommandContext(cctx, browser, all...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, tail(stderr.String()))
		}
		return stdout.String()
	}
	dom := run("--dump-dom", base+"/statusz")
	for _, want := range []string{`id="process"`, `id="checks"`, `id="links"`, `id="state">ready<`, "components", `href="/metrics"`, `href="/configz"`} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered /statusz lacks %q", want)
		}
	}
	// One section per pattern the acts handed over, besides the group's.
	for _, title := range []string{"components", "statsd adapter", "sidecar reloader", "ambassador cluster web",
		"sharding proxy", "election", "workqueue pool", "scatter"} {
		if !strings.Contains(dom, "<h2>"+title) {
			t.Errorf("rendered /statusz lacks the %q section", title)
		}
	}

	dir := os.Getenv("PODBLOCKS_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	shot := filepath.Join(dir, "statusz.png")
	run("--screenshot="+shot, "--window-size=1200,1600", "--hide-scrollbars", base+"/statusz")
	st, err := os.Stat(shot)
	if err != nil || st.Size() < 1000 {
		t.Fatalf("screenshot %s: %v (size %d)", shot, err, sizeOf(st))
	}
	t.Logf("screenshot: %s (%d bytes)", shot, st.Size())
}

func sizeOf(st os.FileInfo) int64 {
	if st == nil {
		return 0
	}
	return st.Size()
}

func tail(s string) string {
	if len(s) > 2000 {
		return s[len(s)-2000:]
	}
	return s
}
