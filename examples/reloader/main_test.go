package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/sidecartest"

	"github.com/podblocks/podblocks/internal/cmdline/cmdlinetest"
	"github.com/podblocks/podblocks/internal/testbin"
)

var bin string

func TestMain(m *testing.M) { testbin.Main(m, "reloader", &bin) }

func TestWebhookAfterConfigMapUpdates(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/-/reload" {
			calls.Add(1)
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	if err := sidecartest.WriteAtomic(dir, map[string]string{"app.yaml": "v0"}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-watch", dir, "-webhook", srv.URL+"/-/reload", "-debounce", "10ms")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	// The content present when the watch starts is the baseline: update only after that.
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.Contains(sc.Text(), `"watching"`) {
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	for i := 1; i <= 5; i++ {
		if err := sidecartest.WriteAtomic(dir, map[string]string{"app.yaml": fmt.Sprintf("v%d", i)}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for calls.Load() < int32(i) {
			if time.Now().After(deadline) {
				t.Fatalf("reload %d never called", i)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
	if got := calls.Load(); got != 5 {
		t.Errorf("webhook calls = %d, want 5", got)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{}, {"-watch", "/tmp"}, {"-watch", "/tmp", "-pid", "1", "-process", "x"}, {"-watch", "/tmp", "-pid", "1", "-signal", "BOGUS"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "reloader:") {
			t.Errorf("reloader %v: err %v, output %q; want a failure with a reason", args, err, out)
		}
	}
}

// TestHelpAndUnknownFlag: -h prints the usage and exits 0; an unknown flag exits 2 with the flag
// package's message, as flag.ExitOnError would.
func TestHelpAndUnknownFlag(t *testing.T) {
	cmdlinetest.TestHelpAndBadFlag(t, "-watch", exec.Command(bin))
}
