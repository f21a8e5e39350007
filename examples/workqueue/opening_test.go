package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/workqueue"
)

// TestServeAnswersWhileOpening: a serve whose bolt file another serve holds waits for it (bolt's
// open timeout, 5s) with its listeners open; meanwhile they answer every request, the readiness
// probe, the API and the metrics alike, 503 with Retry-After and the reason at once, rather than
// leave it unanswered, except the liveness probe, /healthz, which answers 200 while the process
// runs; a Client takes the 503 for ErrUnavailable. When the open fails, serve exits non-zero and
// the ports are closed.
func TestServeAnswersWhileOpening(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	startServe(t, "-backend", "bolt", "-path", path, "-http", "127.0.0.1:0") // holds the file
	addr, metrics := freeport.TCP(t), freeport.TCP(t)
	second, _ := start(t, "serve", "-backend", "bolt", "-path", path, "-http", addr, "-metrics", metrics)
	await.True(t, "the second serve to listen", 4*time.Second, func() bool {
		c, err := net.Dial("tcp", metrics) // the second listener
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	hc := &http.Client{Timeout: 2 * time.Second}
	if code, body := probe(t, hc, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz while the queue opens: %d %q; want 200 (the process is alive)", code, body)
	}
	for _, u := range []string{"http://" + addr + "/readyz", "http://" + addr + workqueue.APIPrefix + "stats",
		"http://" + metrics + "/metrics"} {
		start := time.Now()
		resp, err := hc.Get(u)
		if err != nil {
			t.Fatalf("GET %s while the queue opens: %v; want a 503 at once", u, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "opening the queue") {
			t.Errorf("GET %s while the queue opens: %d, Retry-After %q, %q; want 503, a Retry-After and the reason", u, resp.StatusCode,
				resp.Header.Get("Retry-After"), b)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("GET %s while the queue opens took %v, want an answer at once", u, d)
		}
	}
	c, err := workqueue.NewClient("http://"+addr, hc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Add(context.Background(), []byte("x"), workqueue.AddOptions{}); !errors.Is(err, workqueue.ErrUnavailable) {
		t.Errorf("Client.Add while the queue opens: %v, want ErrUnavailable", err)
	}
	if code := second.exitCode(t, 30*time.Second, "the second serve to give the held file up after bolt's open timeout"); code != 1 {
		t.Errorf("the second serve exited %d, want 1 (the file is held)", code)
	}
	for _, a := range []string{addr, metrics} {
		if c, err := net.Dial("tcp", a); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after serve exited", a)
		}
	}
}
