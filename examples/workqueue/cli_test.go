package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/workqueue"
)

// runBinary runs the binary with args and empty stdin, and returns its exit code, stdout and stderr.
func runBinary(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("workqueue %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// TestHelpExitsZero: -h prints the usage and exits 0, as the other examples' -h does, for the
// command and each subcommand.
func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"--help"}, {"serve", "-h"}, {"enqueue", "-h"}, {"work", "-help"}} {
		code, _, stderr := runBinary(t, args...)
		if code != 0 || !strings.Contains(stderr, "usage:") || !strings.Contains(stderr, "workqueue ") || strings.Contains(stderr, "help requested") {
			t.Errorf("workqueue %s: exit %d, stderr %q; want 0 and the usage", strings.Join(args, " "), code, stderr)
		}
	}
}

// TestEnqueueRefusesExtraArguments: enqueue reads the payload from stdin; an argument after the
// flags (a payload given as one, say) is refused with exit 2, and nothing is added.
func TestEnqueueRefusesExtraArguments(t *testing.T) {
	_, url := startServe(t, "-backend", "memory", "-http", "127.0.0.1:0")
	code, stdout, stderr := runBinary(t, "enqueue", "-server", url, "hello")
	if code != 2 || !strings.Contains(stderr, `unexpected arguments ["hello"]`) {
		t.Errorf("enqueue with an extra argument: exit %d, stdout %q, stderr %q; want 2 naming the argument", code, stdout, stderr)
	}
	c, _ := workqueue.NewClient(url, nil)
	defer c.Close()
	if s, err := c.Stats(context.Background()); err != nil || s.Depth() != 0 {
		t.Errorf("after a refused enqueue: stats %+v, %v; want an empty queue", s, err)
	}
}

// TestServeRefusesBadFlagsFirst: serve checks its flags before it opens or serves anything: the
// error names the flag, nothing says "serving", and bolt leaves no file behind.
func TestServeRefusesBadFlagsFirst(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "q.db")
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"-source", "http://127.0.0.1:1", "-poll", "0s"}, "-poll"},
		{[]string{"-backend", "bolt", "-path", path, "-max-attempts", "-1"}, "-max-attempts"},
		{[]string{"-backend", "bolt", "-path", path, "-lease", "0s"}, "-lease"},
		{[]string{"-backend", "etcd"}, "-backend"},
		{[]string{"-source", "ftp://x"}, "-source"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		args := append([]string{"serve", "-http", "127.0.0.1:0"}, tc.args...)
		code, stdout, stderr := runBinary(t, args...)
		if code != 2 || stdout != "" || !strings.Contains(stderr, tc.flag) {
			t.Errorf("workqueue %s: exit %d, stdout %q, stderr %q; want 2 naming %s, before serving", strings.Join(args, " "), code, stdout, stderr, tc.flag)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bad flags left the bolt file behind: %v", err)
	}
}

// TestMetricsServerLimitsHeaders: the -metrics listener refuses oversized request headers (431),
// as every listener of the project must (DESIGN.md).
func TestMetricsServerLimitsHeaders(t *testing.T) {
	metrics := freeport.TCP(t)
	startServe(t, "-backend", "memory", "-http", "127.0.0.1:0", "-metrics", metrics)
	awaitMetrics(t, metrics, "podblocks_workqueue_queue_added_total 0")
	req, _ := http.NewRequest("GET", "http://"+metrics+"/metrics", nil)
	req.Header.Set("X-Big", strings.Repeat("x", 100<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a 100 KiB header to -metrics: %d, want 431", resp.StatusCode)
	}
}

// TestExitStatuses: a command line the binary cannot use exits 2 naming the reason, a failure while
// running exits 1, as the other example binaries do (internal/cmdline).
func TestExitStatuses(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage:"},
		{[]string{"nope"}, 2, `unknown command "nope"`},
		{[]string{"serve", "-no-such-flag"}, 2, "-no-such-flag"},
		{[]string{"work", "-server", "http://127.0.0.1:1"}, 2, "no command after --"},
		{[]string{"work", "-concurrency", "0", "--", "true"}, 2, "work: "},
		{[]string{"enqueue", "-server", "ftp://x"}, 2, "-server"},
		{[]string{"enqueue", "-server", "http://127.0.0.1:1"}, 1, "unavailable"},
		{[]string{"serve", "-backend", "bolt", "-path", filepath.Join(dir, "no", "such", "dir", "q.db"), "-http", "127.0.0.1:0"}, 1, "no such file or directory"},
		{[]string{"work", "-server", "http://127.0.0.1:1", "--", filepath.Join(dir, "no-such-command")}, 1, "no-such-command"},
	} {
		code, _, stderr := runBinary(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "workqueue: workqueue: ") {
			t.Errorf("workqueue %q: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}
