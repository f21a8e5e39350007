package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/cmdline/cmdlinetest"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/internal/testbin"
)

var binary string

func TestMain(m *testing.M) { testbin.Main(m, "lifecycle", &binary) }

func status(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestSIGTERMDrainsAndExitsZero runs the built binary, puts keep-alive load on it, sends SIGTERM the
// way the kubelet does, and checks the drain: not ready at once, still serving during propagation,
// zero failed requests, exit code 0.
func TestSIGTERMDrainsAndExitsZero(t *testing.T) {
	listen, admin := freeport.TCP(t), freeport.TCP(t)
	cmd := exec.Command(binary, "-listen", listen, "-admin", admin, "-propagation", "1s", "-grace", "10s", "-log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	await.True(t, "readiness", 20*time.Second, func() bool { return status("http://"+admin+"/readyz") == 200 })

	var routed atomic.Bool
	routed.Store(true)
	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	defer tr.CloseIdleConnections()
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for routed.Load() {
				sent.Add(1)
				resp, err := c.Get(fmt.Sprintf("http://%s/work?ms=%d", listen, 20+i*5))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	await.True(t, "load", 20*time.Second, func() bool { return sent.Load() > 500 })
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	await.True(t, "readiness to fail", 20*time.Second, func() bool { return status("http://"+admin+"/readyz") != 200 })
	routed.Store(false) // the endpoints controller removes the pod
	if got := status("http://" + listen + "/"); got != 200 {
		t.Errorf("GET / during propagation = %d, want 200", got)
	}
	wg.Wait()
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("exit: %v, want exit code 0", waitErr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("did not exit after SIGTERM")
	}
	took := time.Since(start)
	t.Logf("SIGTERM drain: %d requests, %d failed, exited 0 after %v", sent.Load(), failed.Load(), took.Round(time.Millisecond))
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed", failed.Load(), sent.Load())
	}
	if took < time.Second {
		t.Errorf("exited after %v, before the 1s propagation delay", took)
	}
}

// serveReady runs the binary with env added to its environment on free -listen and -admin ports
// until the test ends (then SIGTERM), waits until it is ready, and returns the two addresses.
func serveReady(t *testing.T, env ...string) (listen, admin string) {
	t.Helper()
	listen, admin = freeport.TCP(t), freeport.TCP(t)
	cmd := exec.Command(binary, "-listen", listen, "-admin", admin, "-propagation", "0s", "-log-level", "error")
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	await.True(t, "readiness", 20*time.Second, func() bool { return status("http://"+admin+"/readyz") == 200 })
	return listen, admin
}

func TestBadInput(t *testing.T) {
	listen, admin := serveReady(t)
	for url, want := range map[string]int{
		"http://" + listen + "/work?ms=abc":       400,
		"http://" + listen + "/work?ms=99999999":  400,
		"http://" + admin + "/readyz/nosuchcheck": 404,
		"http://" + admin + "/livez?verbose":      200,
		"http://" + admin + "/configz":            200,
		"http://" + admin + "/debug/pprof/":       404,
		"http://" + listen + "/work?ms=1":         200,
	} {
		if got := status(url); got != want {
			t.Errorf("GET %s = %d, want %d", url, got, want)
		}
	}
	req, _ := http.NewRequest("PUT", "http://"+admin+"/logz", nil)
	req.Body = io.NopCloser(strings.NewReader(`{"level":"shouty"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("PUT /logz with a bad level = %d, want 400", resp.StatusCode)
	}
	if err := exec.Command(binary, "-grace", "1s", "-propagation", "5s").Run(); err == nil {
		t.Error("propagation longer than grace: exit 0, want an error")
	}
}

// TestUsageErrors: a flag value, or an environment variable standing for one, that the command
// cannot use is a usage error (exit 2, naming it), found before it serves.
func TestUsageErrors(t *testing.T) {
	cmd := func(env ...string) *exec.Cmd {
		c := exec.Command(binary, "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0")
		c.Env = append(os.Environ(), env...)
		return c
	}
	const levels = "want debug, info, warn, error, dpanic, panic or fatal"
	cmdlinetest.TestExits(t, cmd(), []cmdlinetest.Exit{
		{Args: []string{"-log-level", "loud"}, Status: 2, Stderr: `lifecycle: -log-level "loud": ` + levels},
		{Args: []string{"-log-level", ""}, Status: 2, Stderr: `lifecycle: -log-level "": ` + levels},
		{Args: []string{"-shed-limit", "0"}, Status: 2, Stderr: "lifecycle: -shed-limit 0: want 1 or more"},
		{Args: []string{"-propagation", "-1s"}, Status: 2, Stderr: "lifecycle: -propagation -1s: want 0 or more"},
		{Args: []string{"-grace", "1s", "-propagation", "5s"}, Status: 2, Stderr: "lifecycle: -grace 1s: want more than -propagation 5s plus the 2s safety margin"},
		{Args: []string{"-grace", "0s", "-propagation", "0s"}, Status: 2, Stderr: "lifecycle: -grace 0s: want more than -propagation 0s plus the 2s safety margin"},
		{Args: []string{"-max-work", "-1s"}, Status: 2, Stderr: "lifecycle: -max-work -1s: want 0 or more"},
		{Args: []string{"-admin", "8081"}, Status: 2, Stderr: `lifecycle: -admin "8081": want HOST:PORT`},
		{Args: []string{"-listen", ""}, Status: 2, Stderr: `lifecycle: -listen "": want HOST:PORT`},
	})
	for _, env := range []string{"PROPAGATION=soon", "GRACE=1", "SHED_LIMIT=lots", "PPROF=yes", "LOG_LEVEL=loud"} {
		name, _, _ := strings.Cut(env, "=")
		if name == "LOG_LEVEL" {
			name = "-log-level"
		}
		cmdlinetest.TestExits(t, cmd(env), []cmdlinetest.Exit{{Status: 2, Stderr: "lifecycle: " + name}})
	}
}

// TestPprofFromEnvironment: PPROF is read as strconv.ParseBool reads it, so PPROF=1 serves pprof.
func TestPprofFromEnvironment(t *testing.T) {
	_, admin := serveReady(t, "PPROF=1")
	if got := status("http://" + admin + "/debug/pprof/"); got != 200 {
		t.Errorf("PPROF=1: GET /debug/pprof/ = %d, want 200", got)
	}
}

// TestHelpAndUnknownFlag: -h prints the usage and exits 0; an unknown flag exits 2 with the flag
// package's message, as flag.ExitOnError would.
func TestHelpAndUnknownFlag(t *testing.T) {
	cmdlinetest.TestHelpAndBadFlag(t, "-propagation", exec.Command(binary))
}
