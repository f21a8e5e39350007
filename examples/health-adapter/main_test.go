package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/adaptertest"
	"github.com/podblocks/podblocks/internal/cmdline/cmdlinetest"
	"github.com/podblocks/podblocks/internal/syncbuf"
	"github.com/podblocks/podblocks/internal/testbin"
)

// bin is the built health-adapter, for the tests of its command line; the others call run in-process.
var bin string

func TestMain(m *testing.M) { testbin.Main(m, "health-adapter", &bin) }

// TestHelpAndUnknownFlag: -h prints the usage and exits 0; an unknown flag exits 2 with the flag
// package's message, as flag.ExitOnError would.
func TestHelpAndUnknownFlag(t *testing.T) {
	cmdlinetest.TestHelpAndBadFlag(t, "-readyz", exec.Command(bin))
}

func TestProbes(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "up")
	os.WriteFile(flag, nil, 0o644)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := filepath.Join(dir, "checks.yml")
	os.WriteFile(cfg, []byte("checks:\n- {name: port, probe: livez, tcp: \""+ln.Addr().String()+"\"}\n"), 0o644)

	get, stop := start(t, "-admin", "127.0.0.1:0", "-config", cfg, "-readyz", "exec=test -e "+flag,
		"-interval", "0", "-failure-threshold", "1")
	adaptertest.Eventually(t, 30*time.Second, func() bool {
		code, _ := get("/readyz")
		return code == 200
	}, "/readyz 200 while the flag file exists")
	if code, _ := get("/livez"); code != 200 {
		t.Errorf("/livez = %d", code)
	}
	os.Remove(flag)
	if code, body := get("/readyz?verbose"); code != 500 || !strings.Contains(body, "exec-0") {
		t.Errorf("/readyz after the check fails = %d %q", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "podblocks_adapter_health_up") {
		t.Errorf("/metrics = %d, missing podblocks_adapter_health_up", code)
	}
	stop()
}

// start runs the adapter in-process with args until stop, which fails the test if run failed;
// get requests a path of its hook server.
func start(t *testing.T, args ...string) (get func(path string) (int, string), stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := make(chan string, 1)
	var stderr syncbuf.Buffer
	go func() { done <- run(ctx, args, &stderr, started) }()
	var addr string
	select {
	case addr = <-started:
	case err := <-done:
		cancel()
		t.Fatalf("run: %v (%s)", err, stderr.String())
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		t.Fatal("not started")
	}
	get = func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	return get, func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestUsageErrors: a flag value the adapter cannot use, or one it would ignore, is a usage error
// (exit 2, naming the flag); a -config it cannot read exits 1.
func TestUsageErrors(t *testing.T) {
	const tuning = "only with -livez, -readyz or -startupz (a -config check sets its own)"
	checks := filepath.Join(t.TempDir(), "checks.yml")
	if err := os.WriteFile(checks, []byte("checks:\n- name: up\n  probe: readyz\n  exec: [\"true\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmdlinetest.TestExits(t, exec.Command(bin), []cmdlinetest.Exit{
		{Args: nil, Status: 2, Stderr: "health-adapter: no checks: give -livez, -readyz, -startupz or -config"},
		// An impossible port exited 1 from the hook server's listen.
		{Args: []string{"-admin", "127.0.0.1:99999", "-readyz", "exec=true"}, Status: 2, Stderr: `health-adapter: -admin "127.0.0.1:99999"`},
		// The flag package stops at the first argument that is no flag: the flags after it were dropped.
		{Args: []string{"-admin", "127.0.0.1:0", "-readyz", "exec=true", "extra", "-interval", "1s"}, Status: 2, Stderr: `health-adapter: unexpected arguments ["extra" "-interval" "1s"]`},
		{Args: []string{"-readyz", "ftp=x"}, Status: 2, Stderr: `invalid value "ftp=x" for flag -readyz: unknown check kind "ftp"`},
		// A target the check cannot reach anything with: every probe would fail.
		{Args: []string{"-readyz", "tcp=127.0.0.1"}, Status: 2, Stderr: `invalid value "tcp=127.0.0.1" for flag -readyz: "tcp=127.0.0.1": want tcp=HOST:PORT`},
		{Args: []string{"-livez", "redis=redis"}, Status: 2, Stderr: `invalid value "redis=redis" for flag -livez: "redis=redis": want redis=HOST:PORT`},
		{Args: []string{"-readyz", "grpc=127.0.0.1/svc"}, Status: 2, Stderr: `invalid value "grpc=127.0.0.1/svc" for flag -readyz: "grpc=127.0.0.1/svc": want grpc=HOST:PORT`},
		{Args: []string{"-startupz", "http=127.0.0.1:8080/healthz"}, Status: 2, Stderr: `invalid value "http=127.0.0.1:8080/healthz" for flag -startupz: "127.0.0.1:8080/healthz": want an http or https URL`},
		{Args: []string{"-readyz", "tcp=127.0.0.1:1", "-interval", "-1s"}, Status: 2, Stderr: "health-adapter: -interval -1s: want 0 or more"},
		{Args: []string{"-readyz", "tcp=127.0.0.1:1", "-timeout", "-1s"}, Status: 2, Stderr: "health-adapter: -timeout -1s: want 0 or more"},
		{Args: []string{"-readyz", "tcp=127.0.0.1:1", "-failure-threshold", "-1"}, Status: 2, Stderr: "health-adapter: -failure-threshold -1: want 0 or more"},
		{Args: []string{"-readyz", "tcp=127.0.0.1:1", "-success-threshold", "-1"}, Status: 2, Stderr: "health-adapter: -success-threshold -1: want 0 or more"},
		// The tuning flags apply to the flag checks only: with -config alone they would be ignored.
		{Args: []string{"-admin", "127.0.0.1:0", "-config", checks, "-interval", "1s"}, Status: 2, Stderr: "health-adapter: -interval: " + tuning},
		{Args: []string{"-admin", "127.0.0.1:0", "-config", checks, "-timeout", "1s"}, Status: 2, Stderr: "health-adapter: -timeout: " + tuning},
		{Args: []string{"-admin", "127.0.0.1:0", "-config", checks, "-failure-threshold", "1"}, Status: 2, Stderr: "health-adapter: -failure-threshold: " + tuning},
		{Args: []string{"-admin", "127.0.0.1:0", "-config", checks, "-success-threshold", "2"}, Status: 2, Stderr: "health-adapter: -success-threshold: " + tuning},
		{Args: []string{"-config", "/nonexistent/checks.yml"}, Status: 1, Stderr: "health-adapter: health: read config:"},
	})
}

func TestBadArgs(t *testing.T) {
	for _, args := range [][]string{{}, {"-readyz", "ftp=x"}, {"-readyz", "nope"}, {"-config", "/nonexistent"}} {
		if err := run(context.Background(), args, io.Discard, nil); err == nil {
			t.Errorf("run(%v) succeeded", args)
		}
	}
}

// TestHangCountsAgainstThreshold: a check that hangs past its timeout is one failure against
// -failure-threshold, as the kubelet counts a probe timeout: /readyz stays 200 (and agrees with
// podblocks_adapter_health_up) until the threshold is reached.
func TestHangCountsAgainstThreshold(t *testing.T) {
	hang := filepath.Join(t.TempDir(), "hang")
	get, stop := start(t, "-admin", "127.0.0.1:0", "-readyz", "exec=if [ -f "+hang+" ]; then sleep 3; fi; true",
		"-interval", "0", "-timeout", "300ms", "-failure-threshold", "3")
	up := func() string {
		_, body := get("/metrics")
		for l := range strings.SplitSeq(body, "\n") {
			if strings.HasPrefix(l, `podblocks_adapter_health_up{check="exec-0"}`) {
				return strings.Fields(l)[1]
			}
		}
		return "missing"
	}
	adaptertest.Eventually(t, 30*time.Second, func() bool {
		code, _ := get("/readyz")
		return code == 200
	}, "/readyz 200 before the check hangs")
	if err := os.WriteFile(hang, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		code, body := get("/readyz?verbose")
		wantCode, wantUp := 200, "1"
		if i == 3 {
			wantCode, wantUp = 500, "0"
		}
		if code != wantCode {
			t.Errorf("hang %d of threshold 3: /readyz = %d %q, want %d", i, code, body, wantCode)
		}
		if i == 3 && !strings.Contains(body, "timed out after 300ms") {
			t.Errorf("hang 3: /readyz body %q, want the timeout named", body)
		}
		if got := up(); got != wantUp {
			t.Errorf("hang %d: podblocks_adapter_health_up = %s, want %s (as /readyz says)", i, got, wantUp)
		}
	}
	stop()
}
