package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podblocks/podblocks/internal/cmdline/cmdlinetest"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/workqueue"
)

// runBinary runs the binary with args and empty stdin, and returns its exit code, stdout and stderr.
func runBinary(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return cmdlinetest.Outputs(t, exec.Command(binary, args...))
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
	cmdlinetest.TestExits(t, exec.Command(binary, "serve", "-http", "127.0.0.1:0"), []cmdlinetest.Exit{
		{Args: []string{"-source", "http://127.0.0.1:1", "-poll", "0s"}, Status: 2, Stderr: "-poll"},
		{Args: []string{"-backend", "bolt", "-path", path, "-max-attempts", "-1"}, Status: 2, Stderr: "-max-attempts"},
		{Args: []string{"-backend", "bolt", "-path", path, "-lease", "0s"}, Status: 2, Stderr: "-lease"},
		{Args: []string{"-backend", "etcd"}, Status: 2, Stderr: "-backend"},
		{Args: []string{"-source", "ftp://x"}, Status: 2, Stderr: "-source"},
		{Args: []string{"-backend", "bolt", "-path", path, "-source", "ftp://x"}, Status: 2, Stderr: `serve: -source: workqueue: invalid argument: source URL "ftp://x" (want http://host:port`},
		{Args: []string{"extra"}, Status: 2, Stderr: "unexpected arguments"},
		{Args: []string{"-backend", "bolt", "-path", path, "-http", "nonsense"}, Status: 2, Stderr: `serve: -http "nonsense": want HOST:PORT`},
		{Args: []string{"-backend", "bolt", "-path", path, "-metrics", "9090"}, Status: 2, Stderr: `serve: -metrics "9090": want HOST:PORT`},
		{Args: []string{"-backend", "bolt", "-path", ""}, Status: 2, Stderr: "serve: -path: empty"},
		// nats.Connect would drop the hole; serve refuses it, as every list flag of the examples
		// does (cmdline.List): "$A,$B" with B unset is a list cut short.
		{Args: []string{"-backend", "jetstream", "-nats", "nats://127.0.0.1:1,"}, Status: 2,
			Stderr: `serve: -nats "nats://127.0.0.1:1,": empty item in the comma-separated list`},
		{Args: []string{"-backend", "jetstream", "-nats", ""}, Status: 2, Stderr: "serve: -nats: empty"},
		{Args: []string{"-backend", "jetstream", "-nats", "nats://127.0.0.1:1", "-name", "a.b"}, Status: 2, Stderr: `serve: -name: workqueue: invalid argument: queue name "a.b"`},
	})
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bad flags left the bolt file behind: %v", err)
	}
}

// TestServeListensFirst: a port in use, found only by listening, fails serve (exit 1, naming the
// flag) before it opens the queue: bolt leaves no file behind.
func TestServeListensFirst(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	path := filepath.Join(t.TempDir(), "q.db")
	cmdlinetest.TestExits(t, exec.Command(binary, "serve", "-backend", "bolt", "-path", path), []cmdlinetest.Exit{
		{Args: []string{"-http", taken.Addr().String()}, Status: 1, Stderr: "serve: -http: listen tcp " + taken.Addr().String()},
		{Args: []string{"-http", "127.0.0.1:0", "-metrics", taken.Addr().String()}, Status: 1, Stderr: "serve: -metrics: listen tcp " + taken.Addr().String()},
	})
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a port in use left the bolt file behind: %v", err)
	}
}

// TestServeRefusesFlagsItDoesNotUse: a flag that only a backend or -source uses, given without it,
// is refused with exit 2 naming the flag and what it needs, rather than dropped without a word; and
// no file is left behind.
func TestServeRefusesFlagsItDoesNotUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	cmdlinetest.TestExits(t, exec.Command(binary, "serve", "-http", "127.0.0.1:0"), []cmdlinetest.Exit{
		{Args: []string{"-path", path}, Status: 2, Stderr: "serve: -path: only with -backend bolt"},
		{Args: []string{"-backend", "jetstream", "-nats", "nats://127.0.0.1:1", "-path", path}, Status: 2, Stderr: "serve: -path: only with -backend bolt"},
		{Args: []string{"-backend", "memory", "-nats", "nats://127.0.0.1:1"}, Status: 2, Stderr: "serve: -nats: only with -backend jetstream"},
		{Args: []string{"-backend", "bolt", "-path", path, "-name", "thumbs"}, Status: 2, Stderr: "serve: -name: only with -backend jetstream"},
		{Args: []string{"-replicas", "3"}, Status: 2, Stderr: "serve: -replicas: only with -backend jetstream"},
		{Args: []string{"-backend", "bolt", "-path", path, "-poll", "1s"}, Status: 2, Stderr: "serve: -poll: only with -source"},
	})
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused flags left the bolt file behind: %v", err)
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
	cmdlinetest.TestExits(t, exec.Command(binary), []cmdlinetest.Exit{
		{Args: nil, Status: 2, Stderr: "usage:"},
		{Args: []string{"nope"}, Status: 2, Stderr: `unknown command "nope"`},
		{Args: []string{"serve", "-no-such-flag"}, Status: 2, Stderr: "-no-such-flag"},
		{Args: []string{"work", "-server", "http://127.0.0.1:1"}, Status: 2, Stderr: "no command after --"},
		{Args: []string{"work", "-concurrency", "0", "--", "true"}, Status: 2, Stderr: "work: -concurrency 0: must be 1 or more"},
		{Args: []string{"work", "-timeout", "-1s", "--", "true"}, Status: 2, Stderr: "work: -timeout -1s: must be 0 or more"},
		{Args: []string{"work", "-drain", "-1s", "--", "true"}, Status: 2, Stderr: "work: -drain -1s: must be 0 or more"},
		{Args: []string{"work", "-max-attempts", "-1", "--", "true"}, Status: 2, Stderr: "work: -max-attempts -1: must be 0 or more"},
		{Args: []string{"enqueue", "-server", "ftp://x"}, Status: 2, Stderr: "-server"},
		{Args: []string{"enqueue", "-server", "http://127.0.0.1:1", "-delay", "-1s"}, Status: 2, Stderr: "enqueue: -delay -1s: must be 0 or more"},
		{Args: []string{"enqueue", "-server", "http://127.0.0.1:1"}, Status: 1, Stderr: "unavailable"},
		{Args: []string{"serve", "-backend", "bolt", "-path", filepath.Join(dir, "no", "such", "dir", "q.db"), "-http", "127.0.0.1:0"}, Status: 1, Stderr: "no such file or directory"},
		{Args: []string{"work", "-server", "http://127.0.0.1:1", "--", filepath.Join(dir, "no-such-command")}, Status: 2, Stderr: "work: workqueue: invalid argument: command: exec: \"" + filepath.Join(dir, "no-such-command")},
	})
}
