package main

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/adaptertest"
	"github.com/podblocks/podblocks/internal/cmdline/cmdlinetest"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/internal/syncbuf"
	"github.com/podblocks/podblocks/internal/testbin"
)

// bin is the built statsd-adapter, for the tests of its command line; the others call run in-process.
var bin string

func TestMain(m *testing.M) { testbin.Main(m, "statsd-adapter", &bin) }

// TestHelpAndUnknownFlag: -h prints the usage and exits 0; an unknown flag exits 2 with the flag
// package's message, as flag.ExitOnError would.
func TestHelpAndUnknownFlag(t *testing.T) {
	cmdlinetest.TestHelpAndBadFlag(t, "-statsd.listen-udp", exec.Command(bin))
}

func TestDropIn(t *testing.T) {
	dir := t.TempDir()
	mapping := filepath.Join(dir, "mapping.yml")
	os.WriteFile(mapping, []byte("mappings:\n- match: app.*.hits\n  name: app_hits_total\n  labels: {svc: $1}\n"), 0o644)
	udp, tcp, web := freeport.UDP(t), freeport.TCP(t), freeport.TCP(t)
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run([]string{"--statsd.listen-udp=" + udp, "--statsd.listen-tcp=" + tcp,
			"--statsd.mapping-config", mapping, "--web.listen-address=" + web, "--web.telemetry-path=/m",
			"--statsd.listen-unixgram=" + filepath.Join(dir, "s.sock"), "--web.enable-lifecycle",
			"--statsd.cache-size=1000", "--log.level=error"}, &stdout, &stderr)
	}()
	url := "http://" + web
	waitReady(t, url)
	c, err := adaptertest.DialStatsD("udp", udp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Send("app.web.hits:2|c", "app.web.hits:3|c")
	adaptertest.Eventually(t, 30*time.Second, func() bool {
		v, err := adaptertest.Scrape(url + "/m")
		return err == nil && v[`app_hits_total{svc="web"}`] == 5
	}, "mapped counter = 5")

	// Reload with a new mapping.
	os.WriteFile(mapping, []byte("mappings:\n- match: app.*.hits\n  name: renamed_total\n"), 0o644)
	resp, err := http.Post(url+"/-/reload", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("reload: %v %v", err, resp)
	}
	resp.Body.Close()
	c.Send("app.web.hits:1|c")
	adaptertest.Eventually(t, 30*time.Second, func() bool {
		v, err := adaptertest.Scrape(url + "/m")
		return err == nil && v["renamed_total"] == 1 && v["go_goroutines"] > 0
	}, "renamed counter after reload, next to the Go collector")

	resp, err = http.Post(url+"/-/quit", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v (stderr %s)", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop after /-/quit")
	}
}

// TestUsageErrors: a flag value the adapter cannot use is a usage error (exit 2, naming the flag
// and, for a choice, what it accepts), found before it listens, also with --check-config; a mapping
// config it cannot read exits 1.
func TestUsageErrors(t *testing.T) {
	const levels = "want debug, info, warn or error"
	cmd := exec.Command(bin, "--statsd.listen-udp=", "--statsd.listen-tcp=", "--web.listen-address=127.0.0.1:0")
	cmdlinetest.TestExits(t, cmd, []cmdlinetest.Exit{
		{Args: []string{"--log.level=loud"}, Status: 2, Stderr: `statsd-adapter: --log.level "loud": ` + levels},
		// An impossible port exited 1 from the listen.
		{Args: []string{"--web.listen-address=:99999"}, Status: 2, Stderr: `statsd-adapter: --web.listen-address ":99999"`},
		{Args: []string{"--statsd.listen-udp=127.0.0.1:99999"}, Status: 2, Stderr: `statsd-adapter: --statsd.listen-udp "127.0.0.1:99999"`},
		{Args: []string{"--statsd.listen-tcp=:70000"}, Status: 2, Stderr: `statsd-adapter: --statsd.listen-tcp ":70000"`},
		{Args: []string{"--check-config", "--log.level=loud"}, Status: 2, Stderr: `statsd-adapter: --log.level "loud": ` + levels},
		// zap reads "" as info, and knows levels statsd_exporter does not.
		{Args: []string{"--check-config", "--log.level="}, Status: 2, Stderr: `statsd-adapter: --log.level "": ` + levels},
		{Args: []string{"--check-config", "--log.level=dpanic"}, Status: 2, Stderr: `statsd-adapter: --log.level "dpanic": ` + levels},
		{Args: []string{"--check-config", "--log.format=xml"}, Status: 2, Stderr: `statsd-adapter: --log.format "xml": want logfmt or json`},
		// Not supported: ignoring them would lose the relayed lines, or the TLS and basic auth.
		{Args: []string{"--check-config", "--statsd.relay.address=127.0.0.1:8125"}, Status: 2, Stderr: `statsd-adapter: --statsd.relay.address "127.0.0.1:8125": relaying is not supported`},
		{Args: []string{"--check-config", "--web.config.file=web.yml"}, Status: 2, Stderr: `statsd-adapter: --web.config.file "web.yml": TLS and basic auth are not supported`},
		{Args: []string{"mapping.yml"}, Status: 2, Stderr: `statsd-adapter: unexpected arguments ["mapping.yml"]`},
		{Args: []string{"--statsd.unixsocket-mode=u+rw"}, Status: 2, Stderr: `statsd-adapter: --statsd.unixsocket-mode "u+rw": want an octal mode`},
		{Args: []string{"--statsd.readers=-1"}, Status: 2, Stderr: "statsd-adapter: --statsd.readers -1: want 0 or more"},
		{Args: []string{"--statsd.read-buffer=-1"}, Status: 2, Stderr: "statsd-adapter: --statsd.read-buffer -1: want 0 or more"},
		// These made the mux panic (its pattern syntax) rather than name the flag.
		{Args: []string{"--web.telemetry-path="}, Status: 2, Stderr: `statsd-adapter: --web.telemetry-path "": want a path starting with /`},
		{Args: []string{"--web.telemetry-path=metrics"}, Status: 2, Stderr: `statsd-adapter: --web.telemetry-path "metrics": want a path starting with /`},
		{Args: []string{"--statsd.mapping-config=/nonexistent/mapping.yml"}, Status: 1, Stderr: "statsd-adapter: "},
		// statsd_exporter's way to turn a boolean flag off.
		{Args: []string{"--check-config", "--no-statsd.parse-dogstatsd-tags", "--log.format=logfmt"}, Status: 0, Stdout: "configuration OK\n"},
	})
}

// TestNegatedBoolFlags: --no-NAME turns the boolean flag --NAME off, as in statsd_exporter, and the
// last of --NAME and --no-NAME wins.
func TestNegatedBoolFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want [2]bool // dogstatsd, enableLifecycle
	}{
		{nil, [2]bool{true, false}},
		{[]string{"--no-statsd.parse-dogstatsd-tags"}, [2]bool{false, false}},
		{[]string{"--no-statsd.parse-dogstatsd-tags=false"}, [2]bool{true, false}},
		{[]string{"--no-statsd.parse-dogstatsd-tags", "--statsd.parse-dogstatsd-tags"}, [2]bool{true, false}},
		{[]string{"--web.enable-lifecycle", "--no-web.enable-lifecycle"}, [2]bool{true, false}},
		{[]string{"--no-web.enable-lifecycle", "--web.enable-lifecycle"}, [2]bool{true, true}},
	} {
		c, err := parseFlags(tc.args, io.Discard)
		if err != nil {
			t.Errorf("parseFlags(%q): %v", tc.args, err)
			continue
		}
		if got := [2]bool{c.dogstatsd, c.enableLifecycle}; got != tc.want {
			t.Errorf("parseFlags(%q): dogstatsd, enable-lifecycle = %v, want %v", tc.args, got, tc.want)
		}
	}
	if _, err := parseFlags([]string{"--no-statsd.parse-dogstatsd-tags=maybe"}, io.Discard); err == nil {
		t.Error(`--no-statsd.parse-dogstatsd-tags=maybe accepted`)
	}
}

// TestTelemetryPath: the metrics are served at exactly --web.telemetry-path, whatever it holds:
// ServeMux's pattern syntax ({wildcards}, a method before a space) does not apply to it, and a path
// taken by another endpoint is the metrics'.
func TestTelemetryPath(t *testing.T) {
	for _, path := range []string{"/metrics", "/stats/{all}", "/{x", "/a b", "/-/healthy"} {
		t.Run(path, func(t *testing.T) {
			web := freeport.TCP(t)
			cmd := exec.Command(bin, "--statsd.listen-udp=", "--statsd.listen-tcp=", "--web.listen-address="+web,
				"--web.telemetry-path="+path, "--log.level=error")
			var stderr syncbuf.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				if t.Failed() {
					t.Logf("stderr: %s", stderr.Bytes())
				}
			}()
			u := "http://" + web + (&url.URL{Path: path}).EscapedPath()
			adaptertest.Eventually(t, 30*time.Second, func() bool {
				v, err := adaptertest.Scrape(u)
				return err == nil && v["go_goroutines"] > 0
			}, "metrics at "+u)
			if v, err := adaptertest.Scrape("http://" + web + "/other"); err == nil {
				t.Errorf("GET /other scraped %d series, want a 404", len(v))
			}
		})
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yml")
	bad := filepath.Join(dir, "bad.yml")
	os.WriteFile(good, []byte("mappings:\n- match: a.*\n  name: a\n"), 0o644)
	os.WriteFile(bad, []byte("mappings:\n- match: a.*\n  name: a\n  nope: 1\n"), 0o644)
	var out, errb bytes.Buffer
	if err := run([]string{"--check-config", "--statsd.mapping-config", good}, &out, &errb); err != nil {
		t.Fatalf("good config: %v", err)
	}
	if !strings.Contains(out.String(), "OK") {
		t.Errorf("stdout = %q", out.String())
	}
	if err := run([]string{"--check-config", "--statsd.mapping-config", bad}, &out, &errb); err == nil {
		t.Error("bad config accepted")
	}
	if err := run([]string{"--no-such-flag"}, &out, &errb); err == nil {
		t.Error("unknown flag accepted")
	}
}

// TestNameClashes: statsd metrics named like the adapter's own metrics or the Go and process
// collectors' are conflicts, counted, and do not replace (or vanish behind) the real ones.
func TestNameClashes(t *testing.T) {
	udp, web := freeport.UDP(t), freeport.TCP(t)
	var stdout, stderr syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run([]string{"--statsd.listen-udp=" + udp, "--statsd.listen-tcp=", "--web.listen-address=" + web,
			"--web.enable-lifecycle", "--log.level=error"}, &stdout, &stderr)
	}()
	url := "http://" + web
	waitReady(t, url)
	c, err := adaptertest.DialStatsD("udp", udp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Send("go_goroutines:5|g", "podblocks_adapter_statsd_lines_total:7|c", "process_cpu_seconds_total:1|c",
		"go_gc_duration_seconds_count:1|c", "fine_total:1|c")
	adaptertest.Eventually(t, 30*time.Second, func() bool {
		v, err := adaptertest.Scrape(url + "/metrics")
		return err == nil && v["fine_total"] == 1 && v["podblocks_adapter_statsd_conflicts_total"] == 4
	}, "the four clashing samples counted as conflicts, the fifth served")
	v, err := adaptertest.Scrape(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v["go_goroutines"] == 5 || v["podblocks_adapter_statsd_lines_total"] != 5 {
		t.Errorf("go_goroutines %v, podblocks_adapter_statsd_lines_total %v: want the real ones (lines 5)",
			v["go_goroutines"], v["podblocks_adapter_statsd_lines_total"])
	}
	resp, err := http.Post(url+"/-/quit", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := <-done; err != nil {
		t.Fatalf("run: %v (%s)", err, stderr.String())
	}
}

// waitReady waits until the adapter at url answers /-/ready with 200.
func waitReady(t *testing.T, url string) {
	t.Helper()
	adaptertest.Eventually(t, 30*time.Second, func() bool {
		resp, err := http.Get(url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "ready")
}

// TestVersion: --version prints the version, as statsd_exporter's does, and exits 0 without
// listening.
func TestVersion(t *testing.T) {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("--version: %v", err)
	}
	if !strings.HasPrefix(string(out), "statsd-adapter, version ") || !strings.Contains(string(out), "go version: go") {
		t.Errorf("--version printed %q", out)
	}
}
