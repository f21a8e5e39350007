package main

import (
	"bytes"
	"context"
	"encoding/json"
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

// TestUsageErrors: a flag value the adapter cannot use is a usage error (exit 2, naming the flag),
// found before it opens anything; an -output it cannot open exits 1.
func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.json")
	for _, tc := range []struct {
		args   []string
		status int
		msg    string
	}{
		{[]string{"-format", "xml"}, 2, `log-adapter: -format "xml": want logfmt, json, regex, clf, common or combined`},
		// The flag package stops at the first argument that is no flag: the flags after it were dropped.
		{[]string{"access.log", "-format", "combined"}, 2, `log-adapter: unexpected arguments ["access.log" "-format" "combined"]`},
		{[]string{"-format", "regex"}, 2, "log-adapter: -regex: logs: regex"},
		{[]string{"-format", "regex", "-regex", "(no names)"}, 2, "log-adapter: -regex: logs: regex"},
		{[]string{"-rename", "nokey"}, 2, `log-adapter: -rename: "nokey" is not key=value`},
		{[]string{"-level-map", "x"}, 2, `log-adapter: -level-map: "x" is not key=value`},
		{[]string{"-level-map", "x=loud"}, 2, `log-adapter: -level-map x: unrecognized level: "loud"`},
		{[]string{"-static", "=v"}, 2, `log-adapter: -static: "=v" is not key=value`},
		{[]string{"-min-level", "loud"}, 2, `log-adapter: -min-level: unrecognized level: "loud"`},
		{[]string{"-input", "carrier-pigeon:x", "-output", "file:" + out}, 2, `log-adapter: -input "carrier-pigeon:x": want stdin, file:GLOB, tcp:ADDR, udp:ADDR, unix:PATH or unixgram:PATH`},
		{[]string{"-input", "file:" + dir + "/*/a.log", "-output", "file:" + out}, 2, "log-adapter: sidecar: config globs:"},
		{[]string{"-output", "ftp:x"}, 2, `log-adapter: -output "ftp:x": want stdout or file:PATH`},
		{[]string{"-output", "file:" + filepath.Join(dir, "no-such-dir", "out.json")}, 1, "log-adapter: open "},
	} {
		c := exec.Command(bin, tc.args...)
		if status, out := cmdlinetest.Run(t, c); status != tc.status || !strings.Contains(out, tc.msg) {
			t.Errorf("%s: exit %d, output %q; want exit %d and %q", c, status, out, tc.status, tc.msg)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("after usage errors: stat %s: %v; want it not created", out, err)
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
