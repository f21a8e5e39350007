package main

import (
	"bytes"
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

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := make(chan string, 1)
	var stderr bytes.Buffer
	go func() {
		done <- run(ctx, []string{"-admin", "127.0.0.1:0", "-config", cfg, "-readyz", "exec=test -e " + flag,
			"-interval", "0", "-failure-threshold", "1"}, &stderr, started)
	}()
	var addr string
	select {
	case addr = <-started:
	case err := <-done:
		t.Fatalf("run: %v (%s)", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("not started")
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
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
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestUsageErrors: a flag value the adapter cannot use is a usage error (exit 2, naming the flag);
// a -config it cannot read exits 1.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		status int
		msg    string
	}{
		{nil, 2, "health-adapter: no checks: give -livez, -readyz, -startupz or -config"},
		// The flag package stops at the first argument that is no flag: the flags after it were dropped.
		{[]string{"-admin", "127.0.0.1:0", "-readyz", "exec=true", "extra", "-interval", "1s"}, 2, `health-adapter: unexpected arguments ["extra" "-interval" "1s"]`},
		{[]string{"-readyz", "ftp=x"}, 2, `invalid value "ftp=x" for flag -readyz: unknown check kind "ftp"`},
		{[]string{"-readyz", "tcp=127.0.0.1:1", "-interval", "-1s"}, 2, "health-adapter: -interval -1s: want 0 or more"},
		{[]string{"-readyz", "tcp=127.0.0.1:1", "-timeout", "-1s"}, 2, "health-adapter: -timeout -1s: want 0 or more"},
		{[]string{"-readyz", "tcp=127.0.0.1:1", "-failure-threshold", "-1"}, 2, "health-adapter: -failure-threshold -1: want 0 or more"},
		{[]string{"-readyz", "tcp=127.0.0.1:1", "-success-threshold", "-1"}, 2, "health-adapter: -success-threshold -1: want 0 or more"},
		{[]string{"-config", "/nonexistent/checks.yml"}, 1, "health-adapter: health: read config:"},
	} {
		c := exec.Command(bin, tc.args...)
		if status, out := cmdlinetest.Run(t, c); status != tc.status || !strings.Contains(out, tc.msg) {
			t.Errorf("%s: exit %d, output %q; want exit %d and %q", c, status, out, tc.status, tc.msg)
		}
	}
}

func TestBadArgs(t *testing.T) {
	for _, args := range [][]string{{}, {"-readyz", "ftp=x"}, {"-readyz", "nope"}, {"-config", "/nonexistent"}} {
		if err := run(context.Background(), args, io.Discard, nil); err == nil {
			t.Errorf("run(%v) succeeded", args)
		}
	}
}
