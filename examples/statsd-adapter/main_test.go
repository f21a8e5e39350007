package main

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/adaptertest"
	"github.com/podblocks/podblocks/internal/cmdline/cmdlinetest"
	"github.com/podblocks/podblocks/internal/freeport"
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
	adaptertest.Eventually(t, 30*time.Second, func() bool {
		resp, err := http.Get(url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "ready")
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
