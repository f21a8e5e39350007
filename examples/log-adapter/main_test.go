package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/adaptertest"
	"github.com/podblocks/podblocks/internal/cmdline/cmdlinetest"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/internal/syncbuf"
	"github.com/podblocks/podblocks/internal/testbin"
)

// bin is the built log-adapter, for the tests of its command line; the others call run in-process.
var bin string

func TestMain(m *testing.M) { testbin.Main(m, "log-adapter", &bin) }

// TestHelpAndUnknownFlag: -h prints the usage and exits 0; an unknown flag exits 2 with the flag
// package's message, as flag.ExitOnError would.
func TestHelpAndUnknownFlag(t *testing.T) {
	cmdlinetest.TestHelpAndBadFlag(t, "-format", exec.Command(bin))
}

func TestStdin(t *testing.T) {
	var out, errb bytes.Buffer
	in := strings.NewReader("lvl=warn msg=\"disk low\" u=bob\nmsg=\"unterminated\n")
	if err := run(context.Background(), []string{"-rename", "lvl=level,u=user", "-static", "src=app"}, in, &out, &errb); err != nil {
		t.Fatalf("run: %v (%s)", err, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("output %q, want 2 lines", out.String())
	}
	var first, second map[string]any
	json.Unmarshal([]byte(lines[0]), &first)
	json.Unmarshal([]byte(lines[1]), &second)
	if first["level"] != "warn" || first["msg"] != "disk low" || first["user"] != "bob" || first["src"] != "app" {
		t.Errorf("first line %v", first)
	}
	if second["parse_error"] == nil {
		t.Errorf("second line %v, want a parse_error (nothing lost)", second)
	}
}

// Stdin at EOF ends log-adapter with exit 0 with -metrics too: the normalizer finishing ends the
// group (and its metrics server) cleanly.
func TestStdinEOFWithMetrics(t *testing.T) {
	var out, errb syncbuf.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, []string{"-metrics", freeport.TCP(t)}, strings.NewReader("hello\n"), &out, &errb); err != nil {
		t.Errorf("run with -metrics, stdin at EOF = %v, want nil (stderr %s)", err, errb.String())
	}
	if !strings.Contains(out.String(), "hello") {
		t.Errorf("output %q, want the line", out.String())
	}
}

func TestFileInput(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "access.log")
	outFile := filepath.Join(dir, "out.json")
	os.WriteFile(logFile, []byte(`10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.1" 500 1 "-" "curl/8"`+"\n"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-format", "combined", "-input", "file:" + filepath.Join(dir, "*.log"),
			"-state", filepath.Join(dir, "state"), "-output", "file:" + outFile}, nil, os.Stdout, os.Stderr)
	}()
	adaptertest.Eventually(t, 30*time.Second, func() bool {
		b, _ := os.ReadFile(outFile)
		return bytes.Contains(b, []byte(`"level":"error"`)) && bytes.Contains(b, []byte(`"user_agent":"curl/8"`))
	}, "the access log line normalized into the output file")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestUsageErrors: a flag value the adapter cannot use, or one it would ignore, is a usage error
// (exit 2, naming the flag), found before it opens anything; an -output it cannot open exits 1.
func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.json")
	state := filepath.Join(dir, "state")
	const levels = "want debug, info, warn, error or fatal"
	cmdlinetest.TestExits(t, exec.Command(bin), []cmdlinetest.Exit{
		{Args: []string{"-format", "xml"}, Status: 2, Stderr: `log-adapter: -format "xml": want logfmt, json, regex, clf, common or combined`},
		// The flag package stops at the first argument that is no flag: the flags after it were dropped.
		{Args: []string{"access.log", "-format", "combined"}, Status: 2, Stderr: `log-adapter: unexpected arguments ["access.log" "-format" "combined"]`},
		{Args: []string{"-format", "regex"}, Status: 2, Stderr: "log-adapter: -regex: logs: regex"},
		{Args: []string{"-format", "regex", "-regex", "(no names)"}, Status: 2, Stderr: "log-adapter: -regex: logs: regex"},
		// -regex only means something with -format regex, -state only with a file: input.
		{Args: []string{"-regex", "^(?P<msg>.*)$"}, Status: 2, Stderr: "log-adapter: -regex: only with -format regex"},
		{Args: []string{"-format", "json", "-regex", "^(?P<msg>.*)$", "-output", "file:" + out}, Status: 2, Stderr: "log-adapter: -regex: only with -format regex"},
		{Args: []string{"-state", state}, Status: 2, Stderr: "log-adapter: -state: only with -input file:GLOB"},
		{Args: []string{"-input", "tcp:127.0.0.1:0", "-state", state, "-output", "file:" + out}, Status: 2, Stderr: "log-adapter: -state: only with -input file:GLOB"},
		{Args: []string{"-rename", "nokey"}, Status: 2, Stderr: `log-adapter: -rename: "nokey" is not key=value`},
		{Args: []string{"-rename", "lvl="}, Status: 2, Stderr: "log-adapter: -rename lvl: no new name"},
		{Args: []string{"-level-field", "level,,lvl"}, Status: 2, Stderr: `log-adapter: -level-field "level,,lvl": empty item in the comma-separated list`},
		{Args: []string{"-time-field", ","}, Status: 2, Stderr: `log-adapter: -time-field ",": empty item in the comma-separated list`},
		{Args: []string{"-message-field", "msg,"}, Status: 2, Stderr: `log-adapter: -message-field "msg,": empty item in the comma-separated list`},
		{Args: []string{"-time-layout", "2006-01-02||15:04"}, Status: 2, Stderr: `log-adapter: -time-layout "2006-01-02||15:04": empty layout`},
		{Args: []string{"-level-map", "x"}, Status: 2, Stderr: `log-adapter: -level-map: "x" is not key=value`},
		{Args: []string{"-level-map", "x=loud"}, Status: 2, Stderr: `log-adapter: -level-map x: level "loud": ` + levels},
		{Args: []string{"-level-map", "x="}, Status: 2, Stderr: `log-adapter: -level-map x: level "": ` + levels},
		{Args: []string{"-static", "=v"}, Status: 2, Stderr: `log-adapter: -static: "=v" is not key=value`},
		{Args: []string{"-static", "level=x"}, Status: 2, Stderr: "log-adapter: -static level: the key is the normalizer's"},
		{Args: []string{"-min-level", "loud"}, Status: 2, Stderr: `log-adapter: -min-level: level "loud": ` + levels},
		{Args: []string{"-min-level", ""}, Status: 2, Stderr: `log-adapter: -min-level: level "": ` + levels},
		{Args: []string{"-input", "carrier-pigeon:x", "-output", "file:" + out}, Status: 2, Stderr: `log-adapter: -input "carrier-pigeon:x": want stdin, file:GLOB, tcp:ADDR, udp:ADDR, unix:PATH or unixgram:PATH`},
		// An address after stdin would be ignored; an empty one after another kind is none.
		{Args: []string{"-input", "stdin:x"}, Status: 2, Stderr: `log-adapter: -input "stdin:x": want stdin, file:GLOB`},
		{Args: []string{"-input", "tcp:", "-output", "file:" + out}, Status: 2, Stderr: `log-adapter: -input "tcp:": want stdin, file:GLOB`},
		{Args: []string{"-input", "file:", "-output", "file:" + out}, Status: 2, Stderr: `log-adapter: -input "file:": want stdin, file:GLOB`},
		{Args: []string{"-input", "tcp", "-output", "file:" + out}, Status: 2, Stderr: `log-adapter: -input "tcp": want stdin, file:GLOB`},
		{Args: []string{"-input", "file:" + dir + "/*/a.log", "-output", "file:" + out}, Status: 2, Stderr: "log-adapter: sidecar: config globs:"},
		{Args: []string{"-metrics", "9090"}, Status: 2, Stderr: `log-adapter: -metrics "9090": want HOST:PORT`},
		{Args: []string{"-output", "ftp:x"}, Status: 2, Stderr: `log-adapter: -output "ftp:x": want stdout or file:PATH`},
		{Args: []string{"-output", "file:"}, Status: 2, Stderr: `log-adapter: -output "file:": want stdout or file:PATH`},
		{Args: []string{"-output", "file:" + filepath.Join(dir, "no-such-dir", "out.json")}, Status: 1, Stderr: "log-adapter: open "},
	})
	for _, p := range []string{out, state} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("after usage errors: stat %s: %v; want it not created", p, err)
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-format", "xml"}, {"-format", "regex", "-regex", "(no names)"},
		{"-rename", "nokey"}, {"-input", "carrier-pigeon:x"}, {"-min-level", "loud"}} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), args, strings.NewReader(""), &out, &errb); err == nil {
			t.Errorf("run(%v) succeeded", args)
		}
	}
}

// TestWriteErrorStdin: a line that cannot be written is an error on stderr and a non-zero exit,
// not silence.
func TestWriteErrorStdin(t *testing.T) {
	cmd := exec.Command(bin, "-output", "file:/dev/full")
	cmd.Stdin = strings.NewReader("a=1\nb=2\n")
	out, err := cmd.CombinedOutput()
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 1 ||
		!strings.Contains(string(out), "log-adapter: logs: write:") {
		t.Errorf("log-adapter -output file:/dev/full: %v %q, want exit 1 naming the write error", err, out)
	}
}

// failingWriter fails its writes number fail, fail+1, ... until healed, then writes to w.
type failingWriter struct {
	mu     sync.Mutex
	w      bytes.Buffer
	writes int
	fail   int
	healed bool
}

func (f *failingWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if !f.healed && f.writes >= f.fail {
		return 0, errors.New("disk full")
	}
	return f.w.Write(p)
}

func (f *failingWriter) heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.healed = true
}

func (f *failingWriter) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.w.String()
}

// TestWriteErrorFileInput: with a file input, a line that cannot be written is logged and retried
// (the position does not move past it) until the output works again; then every line is written,
// once.
func TestWriteErrorFileInput(t *testing.T) {
	dir := t.TempDir()
	var lines strings.Builder
	for i := range 5 {
		fmt.Fprintf(&lines, "n=%d\n", i)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.log"), []byte(lines.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := &failingWriter{fail: 3} // the first two lines are written, the third fails
	var stderr syncbuf.Buffer
	metrics := freeport.TCP(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-input", "file:" + filepath.Join(dir, "*.log"), "-state", filepath.Join(dir, "state"),
			"-metrics", metrics}, nil, out, &stderr)
	}()
	adaptertest.Eventually(t, 30*time.Second, func() bool { return strings.Contains(stderr.String(), "disk full") },
		"the write error logged")
	adaptertest.Eventually(t, 30*time.Second, func() bool {
		resp, err := http.Get("http://" + metrics + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return regexp.MustCompile(`(?m)^podblocks_adapter_logs_write_errors_total [1-9]`).Match(b)
	}, "podblocks_adapter_logs_write_errors_total counted at -metrics")
	out.heal()
	adaptertest.Eventually(t, 30*time.Second, func() bool { return strings.Count(out.String(), "\n") >= 5 },
		"the five lines written once the output works")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var got []string
	for l := range strings.SplitSeq(strings.TrimSpace(out.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("output line %q: %v", l, err)
		}
		got = append(got, fmt.Sprint(rec["n"]))
	}
	if diff := cmp.Diff([]string{"0", "1", "2", "3", "4"}, got); diff != "" {
		t.Errorf("lines written (-want +got):\n%s", diff)
	}
}
