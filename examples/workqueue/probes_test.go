package main

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/workqueue"
)

// probe GETs u and returns the status and the body; a request that fails fails the test.
func probe(t *testing.T, hc *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeProbes: with Kubernetes' conventions, a serving queue answers /readyz and /healthz
// 200; on SIGTERM, /readyz answers 503 (with Retry-After and the reason) while the API keeps
// serving for -propagation and /healthz stays 200; then serve exits 0.
func TestServeProbes(t *testing.T) {
	p, url := startServe(t, "-backend", "memory", "-http", "127.0.0.1:0", "-propagation", "3s")
	hc := &http.Client{Timeout: 2 * time.Second}
	for _, path := range []string{"/readyz", "/healthz"} {
		if code, body := probe(t, hc, url+path); code != http.StatusOK {
			t.Errorf("GET %s while serving: %d %q, want 200", path, code, body)
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	sent := time.Now()
	var code int
	var body string
	await.True(t, "/readyz to answer 503 after SIGTERM", 2*time.Second, func() bool {
		code, body = probe(t, hc, url+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	resp, err := hc.Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz after SIGTERM: Retry-After %q, %q; want a Retry-After and the reason", resp.Header.Get("Retry-After"), body)
	}
	if code, body := probe(t, hc, url+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz while draining: %d %q, want 200", code, body)
	}
	if code, body := probe(t, hc, url+workqueue.APIPrefix+"stats"); code != http.StatusOK {
		t.Errorf("GET stats during -propagation: %d %q, want 200 (still serving)", code, body)
	}
	if code := p.exitCode(t, 15*time.Second, "serve to exit after -propagation"); code != 0 {
		t.Errorf("serve exited %d after SIGTERM, want 0", code)
	}
	if d := time.Since(sent); d < 2500*time.Millisecond {
		t.Errorf("serve exited %v after SIGTERM, want it to keep serving for -propagation (3s)", d)
	}
}

// TestServeSIGTERMWhileOpening: a serve that waits for a bolt file another serve holds stops
// waiting on SIGTERM and exits 0 at once (not after bolt's open timeout, 5s, with its error),
// its port closed; the other serve keeps the file and serves on.
func TestServeSIGTERMWhileOpening(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	_, first := startServe(t, "-backend", "bolt", "-path", path, "-http", "127.0.0.1:0") // holds the file
	addr := freeport.TCP(t)
	second, _ := start(t, "serve", "-backend", "bolt", "-path", path, "-http", addr)
	hc := &http.Client{Timeout: 2 * time.Second}
	await.True(t, "the second serve to answer /readyz 503 (opening)", 4*time.Second, func() bool {
		resp, err := hc.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	second.cmd.Process.Signal(syscall.SIGTERM)
	sent := time.Now()
	if code := second.exitCode(t, 10*time.Second, "the second serve to exit on SIGTERM"); code != 0 {
		t.Errorf("the second serve exited %d on SIGTERM while opening, want 0", code)
	}
	if d := time.Since(sent); d > 2*time.Second {
		t.Errorf("the second serve exited %v after SIGTERM, want at once (not after bolt's open timeout)", d)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after serve exited", addr)
	}
	if code, body := probe(t, hc, first+"/readyz"); code != http.StatusOK {
		t.Errorf("the first serve's /readyz: %d %q, want 200", code, body)
	}
}

// TestServeSecondSignalEndsPropagation: a second SIGTERM during -propagation ends the wait at once
// (someone at a terminal), as package lifecycle's second signal does; serve then drains and exits 0.
func TestServeSecondSignalEndsPropagation(t *testing.T) {
	p, url := startServe(t, "-backend", "memory", "-http", "127.0.0.1:0", "-propagation", "30s")
	hc := &http.Client{Timeout: 2 * time.Second}
	p.cmd.Process.Signal(syscall.SIGTERM)
	await.True(t, "/readyz to answer 503 after SIGTERM", 5*time.Second, func() bool {
		code, _ := probe(t, hc, url+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	p.cmd.Process.Signal(syscall.SIGTERM)
	sent := time.Now()
	if code := p.exitCode(t, 20*time.Second, "serve to exit on the second SIGTERM"); code != 0 {
		t.Errorf("serve exited %d after a second SIGTERM, want 0", code)
	}
	if d := time.Since(sent); d > 10*time.Second {
		t.Errorf("serve exited %v after the second SIGTERM, want at once (not after -propagation 30s)", d)
	}
}
