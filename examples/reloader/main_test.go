package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/sidecartest"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/cmdline/cmdlinetest"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/internal/syncbuf"
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

// TestBadFlags: a flag value the reloader cannot use, or one it would ignore, is a usage error (exit
// 2, naming the flag), found before it watches anything.
func TestBadFlags(t *testing.T) {
	dir := t.TempDir()
	const hook = "http://127.0.0.1:1/-/reload"
	cmdlinetest.TestExits(t, exec.Command(bin), []cmdlinetest.Exit{
		{Args: nil, Status: 2, Stderr: "reloader: -watch is required"},
		// The flag package stops at the first argument that is no flag: the flags after it were dropped.
		{Args: []string{"-watch", dir, "-pid", "1", "extra", "-signal", "USR1"}, Status: 2, Stderr: `reloader: unexpected arguments ["extra" "-signal" "USR1"]`},
		// An empty item would be ".", the reloader's working directory.
		{Args: []string{"-watch", ",", "-webhook", hook}, Status: 2, Stderr: `reloader: -watch ",": empty item in the comma-separated list`},
		{Args: []string{"-watch", dir + ",", "-webhook", hook}, Status: 2, Stderr: `reloader: -watch "` + dir + `,": empty item in the comma-separated list`},
		{Args: []string{"-watch", dir}, Status: 2, Stderr: "reloader: want exactly one of -webhook, -pid and -process"},
		{Args: []string{"-watch", dir, "-pid", "1", "-process", "x"}, Status: 2, Stderr: "reloader: want exactly one of -webhook, -pid and -process"},
		{Args: []string{"-watch", dir, "-pid", "1", "-signal", "BOGUS"}, Status: 2, Stderr: `reloader: -signal "BOGUS": unknown; want one of HUP, INT, QUIT, TERM`},
		// A webhook is called, not signalled; a signal is sent, not with a method.
		{Args: []string{"-watch", dir, "-webhook", hook, "-signal", "USR1"}, Status: 2, Stderr: "reloader: -signal: only with -pid or -process"},
		{Args: []string{"-watch", dir, "-process", "no-such-process-reloader-test", "-method", "PUT"}, Status: 2, Stderr: "reloader: -method: only with -webhook"},
		// kill(2) sends a signal to every process it may for -1, and to a process group below that.
		{Args: []string{"-watch", dir, "-pid", "-1"}, Status: 2, Stderr: "reloader: -pid -1: want a process ID above 0"},
		{Args: []string{"-watch", dir, "-webhook", "127.0.0.1:9090/-/reload"}, Status: 2, Stderr: `reloader: -webhook "127.0.0.1:9090/-/reload": want an http or https URL`},
		// A port no request can reach was retried after every change, for as long as the reloader ran.
		{Args: []string{"-watch", dir, "-webhook", "http://127.0.0.1:99999/-/reload"}, Status: 2, Stderr: `reloader: -webhook "http://127.0.0.1:99999/-/reload": port "99999": want a number from 1 to 65535`},
		{Args: []string{"-watch", dir, "-webhook", "http://127.0.0.1:1/", "-method", "RE LOAD"}, Status: 2, Stderr: `reloader: -method "RE LOAD": net/http: invalid method`},
		{Args: []string{"-watch", dir, "-pid", "1", "-poll", "0s"}, Status: 2, Stderr: "reloader: -poll 0s: want more than 0"},
		{Args: []string{"-watch", dir, "-pid", "1", "-debounce", "-1s"}, Status: 2, Stderr: "reloader: -debounce -1s: want 0 or more"},
		// No kernel gives a PID this high (Linux's pid_max is at most 2^22): no process can ever have it.
		{Args: []string{"-watch", dir, "-pid", "1073741824"}, Status: 2, Stderr: "reloader: -pid 1073741824: above the largest process ID here, "},
		{Args: []string{"-watch", dir, "-webhook", hook, "-metrics", "9102"}, Status: 2, Stderr: `reloader: -metrics "9102": want HOST:PORT`},
		// The port is looked up before anything runs, not when the listener fails later.
		{Args: []string{"-watch", dir, "-webhook", hook, "-metrics", "127.0.0.1:http9"}, Status: 2, Stderr: `reloader: -metrics "127.0.0.1:http9": port "http9": want a number from 0 to 65535 or a known service name (such as "http"); it is neither`},
		{Args: []string{"-watch", dir, "-webhook", hook, "-metrics", ":99999"}, Status: 2, Stderr: `reloader: -metrics ":99999": port "99999": want a number from 0 to 65535`},
	})
}

// startWatching starts the reloader with args, its stderr in log, killed when the test ends, and
// waits until it watches.
func startWatching(t *testing.T, args ...string) (*exec.Cmd, *syncbuf.Buffer) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	log := &syncbuf.Buffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	await.True(t, "the reloader watching", 30*time.Second, func() bool { return strings.Contains(log.String(), `"watching"`) })
	return cmd, log
}

// TestWatchPathMissingAtStart: a -watch path that does not exist yet (an optional ConfigMap key, a
// Syncer's link before its first publish) is a warning, not an exit (3010297 exited 2, every
// restart); its appearance calls the webhook once.
func TestWatchPathMissingAtStart(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer srv.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "current", "site.conf")
	cmd, log := startWatching(t, "-watch", dir+","+conf, "-webhook", srv.URL, "-debounce", "10ms", "-poll", "50ms")
	if !strings.Contains(log.String(), "does not exist yet") || !strings.Contains(log.String(), conf) {
		t.Errorf("no warning naming the missing path %s:\n%s", conf, log.String())
	}
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("s"), 0o644); err != nil {
		t.Fatal(err)
	}
	await.True(t, "the webhook called", 30*time.Second, func() bool { return calls.Load() >= 1 })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v\n%s", err, log.String())
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("webhook calls = %d, want 1", got)
	}
}

// TestHelpAndUnknownFlag: -h prints the usage and exits 0; an unknown flag exits 2 with the flag
// package's message, as flag.ExitOnError would.
func TestHelpAndUnknownFlag(t *testing.T) {
	cmdlinetest.TestHelpAndBadFlag(t, "-watch", exec.Command(bin))
}

// TestProcessNotYetRunning: the application container may start after the reloader, so a -process
// name no process has yet is a warning, not an error; a change while none runs is logged as a signal
// that reached no process and is not retried (the old code retried it, and SIGHUPed the process the
// moment it started, before its handler was installed); the next change signals it once.
func TestProcessNotYetRunning(t *testing.T) {
	dir := t.TempDir()
	name := fmt.Sprintf("pbrlapp%d", os.Getpid()%100000)
	if err := sidecartest.WriteAtomic(dir, map[string]string{"app.conf": "v0"}); err != nil {
		t.Fatal(err)
	}
	// Each version is swapped in whole, as a ConfigMap volume's: a write in place could be hashed half
	// done, and signal twice.
	addr := freeport.TCP(t)
	cmd, log := startWatching(t, "-watch", dir, "-process", name, "-debounce", "10ms", "-poll", "50ms", "-metrics", addr)
	if !strings.Contains(log.String(), "no process has the -process name yet") {
		t.Errorf("no warning about the missing process at start:\n%s", log.String())
	}
	if err := sidecartest.WriteAtomic(dir, map[string]string{"app.conf": "v1"}); err != nil {
		t.Fatal(err)
	}
	await.True(t, "a miss logged", 30*time.Second, func() bool {
		return strings.Contains(log.String(), `"reload signal reached no process, the next change signals again"`) &&
			strings.Contains(log.String(), `"missed":1`)
	})
	if got := scrape(t, addr, "podblocks_sidecar_reloader_reloads_total"); !slices.Contains(got, `podblocks_sidecar_reloader_reloads_total{result="no_process"} 1`) {
		t.Errorf("metrics after a signal that reached no process: %q, want result=\"no_process\" counted 1", got)
	}

	// The application: a shell under the name, appending a line to a file on every SIGHUP.
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	data, err := os.ReadFile(sh)
	if err != nil {
		t.Fatal(err)
	}
	appDir := t.TempDir() // not the watched one: the application's writes are no config change
	app, hups, trapped := filepath.Join(appDir, name), filepath.Join(appDir, "hups"), filepath.Join(appDir, "trapped")
	if err := os.WriteFile(app, data, 0o755); err != nil {
		t.Fatal(err)
	}
	appCmd := exec.Command(app, "-c", fmt.Sprintf(`trap 'echo hup >> %s' HUP; touch %s; while :; do sleep 0.02; done`, hups, trapped))
	if err := appCmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = appCmd.Process.Kill(); _ = appCmd.Wait() }()
	await.True(t, "the application's trap", 10*time.Second, func() bool { _, err := os.Stat(trapped); return err == nil })
	if err := sidecartest.WriteAtomic(dir, map[string]string{"app.conf": "v2"}); err != nil {
		t.Fatal(err)
	}
	await.True(t, "the reload", 30*time.Second, func() bool { return strings.Contains(log.String(), `"reloaded"`) })
	await.True(t, "the SIGHUP handled", 10*time.Second, func() bool { b, _ := os.ReadFile(hups); return len(b) > 0 })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
	if b, _ := os.ReadFile(hups); strings.Count(string(b), "hup") != 1 {
		t.Errorf("SIGHUPs handled = %d, want 1 (the change that reached no process is not replayed)", strings.Count(string(b), "hup"))
	}
}

// scrape GETs /metrics from addr and returns its lines that start with prefix.
func scrape(t *testing.T, addr, prefix string) []string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s, %v", resp.Status, err)
	}
	var lines []string
	for l := range strings.Lines(string(body)) {
		if strings.HasPrefix(l, prefix) {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	return lines
}

// freePID returns a process ID that no process has now: that of a process that has exited and been
// collected.
func freePID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// TestPIDNotYetRunningWaits: the application container may start after the reloader, so a -pid no
// process has yet is a warning, and a wait, not an exit (it exited 2, "no such process", every
// restart of the container); SIGTERM ends the wait, exit 0.
func TestPIDNotYetRunningWaits(t *testing.T) {
	pid := freePID(t)
	cmd := exec.Command(bin, "-watch", t.TempDir(), "-pid", strconv.Itoa(pid), "-signal", "USR1")
	log := &syncbuf.Buffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill(); <-ended }()
	waiting := fmt.Sprintf(`"msg":"-pid names no process yet: waiting for it to start before watching","pid":%d`, pid)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log.String(), waiting); time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-ended:
			ended <- err
			t.Fatalf("the reloader exited (%v) for a -pid no process has yet:\n%s", err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no warning that it waits for -pid %d in 10s:\n%s", pid, log.String())
		}
	}
	if strings.Contains(log.String(), `"watching"`) {
		t.Errorf("watching before the -pid process runs:\n%s", log.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		ended <- err
		if err != nil {
			t.Errorf("exit after SIGTERM while waiting: %v\n%s", err, log.String())
		}
	case <-time.After(10 * time.Second):
		t.Errorf("still running 10s after SIGTERM while waiting for the -pid process")
	}
}

// TestPIDStartsLater: the process gets the -pid after the reloader started (in a PID namespace of
// the test's own, where the next PID can be chosen, as root); the reloader starts watching then,
// and a change signals it.
func TestPIDStartsLater(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("no unshare")
	}
	if out, err := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c", "echo 99 > /proc/sys/kernel/ns_last_pid").CombinedOutput(); err != nil {
		t.Skipf("cannot choose the next PID in a PID namespace of its own (needs root): %v: %s", err, out)
	}
	dir := t.TempDir()
	conf, log, out := filepath.Join(dir, "app.conf"), filepath.Join(dir, "reloader.log"), filepath.Join(dir, "app.out")
	if err := os.WriteFile(conf, []byte("v0"), 0o644); err != nil {
		t.Fatal(err)
	}
	// In the namespace: the reloader waits for PID 300; then the application, a shell appending a
	// line to app.out on each SIGUSR1, is made the next process, PID 300.
	const pid = 300
	script := `"$BIN" -watch "$CONF" -pid 300 -signal USR1 -debounce 10ms 2>"$LOG" &
while ! grep -q 'waiting for it to start' "$LOG"; do sleep 0.02; done
echo 299 > /proc/sys/kernel/ns_last_pid
sh -c 'trap "echo usr1 >> \"$OUT\"" USR1; echo $$ > "$OUT.pid"; while :; do sleep 0.02; done' &
wait`
	cmd := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "BIN="+bin, "CONF="+conf, "LOG="+log, "OUT="+out)
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	logged := func() string { b, _ := os.ReadFile(log); return string(b) }
	await.True(t, "the application started", 20*time.Second, func() bool { _, err := os.Stat(out + ".pid"); return err == nil })
	if b, _ := os.ReadFile(out + ".pid"); strings.TrimSpace(string(b)) != strconv.Itoa(pid) {
		t.Fatalf("the application got PID %s, not %d (another process of the namespace took it): %s", b, pid, stderr.String())
	}
	await.True(t, "the reloader watching once the -pid process runs", 20*time.Second, func() bool { return strings.Contains(logged(), `"watching"`) })
	if !strings.Contains(logged(), `"the -pid process runs: watching"`) {
		t.Errorf("no log that the -pid process runs:\n%s", logged())
	}
	// Renamed over the old one whole: a write in place could be hashed half done, and signal twice.
	if err := os.WriteFile(conf+".tmp", []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(conf+".tmp", conf); err != nil {
		t.Fatal(err)
	}
	await.True(t, "the application signalled", 20*time.Second, func() bool { b, _ := os.ReadFile(out); return len(b) > 0 })
	if b, _ := os.ReadFile(out); string(b) != "usr1\n" {
		t.Errorf("the application got %q, want one SIGUSR1", b)
	}
}
