//go:build unix

package sidecar_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/sidecar"
	"github.com/podblocks/podblocks/sidecartest"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// sighupCounter starts a shell, under the executable name name, that appends a line to a file on
// every SIGHUP.
func sighupCounter(t *testing.T, name string) (cmd *exec.Cmd, hups func() int) {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, name)
	data, err := os.ReadFile(sh)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "hups")
	ready := filepath.Join(dir, "ready")
	cmd = exec.Command(bin, "-c", fmt.Sprintf(`trap 'echo hup >> %s' HUP; touch %s; while :; do sleep 0.02; done`, out, ready))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitUntil(t, "trap installed", 10*time.Second, func() bool { _, err := os.Stat(ready); return err == nil })
	return cmd, func() int {
		data, _ := os.ReadFile(out)
		return strings.Count(string(data), "hup")
	}
}

func TestReloaderSignals(t *testing.T) {
	for _, by := range []string{"pid", "name"} {
		t.Run(by, func(t *testing.T) {
			name := fmt.Sprintf("pbreload%d", os.Getpid()%100000)
			cmd, hups := sighupCounter(t, name)
			action := sidecar.SignalPID(cmd.Process.Pid, syscall.SIGHUP)
			if by == "name" {
				action = sidecar.SignalName("", name, syscall.SIGHUP)
			}
			dir := t.TempDir()
			r, err := sidecar.NewReloader([]string{dir}, action, sidecar.WithDebounce(5*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			start(t, r)
			if err := os.WriteFile(filepath.Join(dir, "conf"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "SIGHUP delivered", 10*time.Second, func() bool { return hups() >= 1 })
		})
	}
}

func TestSignalNameWithoutProcessIsAnError(t *testing.T) {
	err := sidecar.SignalName("", "no-such-process-podblocks", syscall.SIGHUP)(context.Background())
	if !errors.Is(err, sidecar.ErrNoProcess) {
		t.Fatalf("err = %v, want ErrNoProcess", err)
	}
}

// TestSignalPIDRefusesNonPositive: kill(2) reads a pid of 0 as the caller's process group and -1 as
// every process it may signal, so SignalPID must not pass them on. Signal 0 only checks permission,
// so the old code's kill(-1, 0) succeeded here without sending anything.
func TestSignalPIDRefusesNonPositive(t *testing.T) {
	for _, pid := range []int{0, -1, -2} {
		err := sidecar.SignalPID(pid, syscall.Signal(0))(context.Background())
		var ce *sidecar.ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("SignalPID(%d): %v, want a *ConfigError", pid, err)
		}
	}
}

// noPID is above every kernel's largest PID (Linux's pid_max is at most 2^22, the BSDs' 99999), so no
// process has it and kill(2) answers ESRCH; a reaped child's PID could be reused by a stranger.
const noPID = 1 << 30

// reloadResults reads podblocks_sidecar_reloader_reloads_total by result from reg.
func reloadResults(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "podblocks_sidecar_reloader_reloads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" {
					got[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return got
}

// TestReloaderSignalToNoProcessCountedNotRetried: a signal that reaches no process (its PID exited;
// no process has the name yet) is counted as result "no_process" and not retried: the old code
// retried it with backoff forever, so the Reloader saw no later change, and it sent the pending
// SIGHUP to a process of that name the moment it started (before its handler was installed, SIGHUP
// kills). The next change signals the process that runs by then, once.
func TestReloaderSignalToNoProcessCountedNotRetried(t *testing.T) {
	for _, by := range []string{"pid", "name"} {
		t.Run(by, func(t *testing.T) {
			name := fmt.Sprintf("pbnoproc%d", os.Getpid()%100000)
			action := sidecar.SignalPID(noPID, syscall.SIGHUP)
			if by == "name" {
				action = sidecar.SignalName("", name, syscall.SIGHUP)
			}
			reg := prometheus.NewRegistry()
			dir := t.TempDir()
			r, err := sidecar.NewReloader([]string{dir}, action, sidecar.WithDebounce(5*time.Millisecond),
				sidecar.WithPollInterval(20*time.Millisecond), sidecar.WithRegisterer(reg),
				sidecar.WithBackoff(func(int) time.Duration { return time.Millisecond }))
			if err != nil {
				t.Fatal(err)
			}
			start(t, r)
			for i := 1; i <= 2; i++ {
				// Swapped in whole, as a ConfigMap volume is: a write in place could be hashed half done.
				if err := sidecartest.WriteAtomic(dir, map[string]string{"conf": fmt.Sprint(i)}); err != nil {
					t.Fatal(err)
				}
				waitUntil(t, fmt.Sprintf("change %d counted as no_process", i), 10*time.Second, func() bool {
					return reloadResults(t, reg)["no_process"] == float64(i)
				})
			}
			if by == "pid" {
				if got := r.Reloads(); got != 0 {
					t.Errorf("Reloads() = %d, want 0", got)
				}
				return
			}
			_, hups := sighupCounter(t, name)
			if err := sidecartest.WriteAtomic(dir, map[string]string{"conf": "3"}); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "reload after the process started", 10*time.Second, func() bool { return r.Reloads() == 1 })
			// The Action returned once kill(2) returned: the shell runs its trap by the next poll.
			waitUntil(t, "SIGHUP handled", 10*time.Second, func() bool { return hups() >= 1 })
			if got := hups(); got != 1 {
				t.Errorf("SIGHUPs = %d, want 1 (the changes that reached no process are not replayed)", got)
			}
			if diff := cmp.Diff(map[string]float64{"no_process": 2, "ok": 1, "rejected": 0}, reloadResults(t, reg)); diff != "" {
				t.Errorf("reloads by result (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReloaderSignalPIDExitedSaysSo: a -pid target that exited is not signalled again, and the log
// says so; the old code logged "the next change signals again", false for a fixed PID (and, once
// the PID was reused, the next change would have signalled another process).
func TestReloaderSignalPIDExitedSaysSo(t *testing.T) {
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Skip("no sleep:", err)
	}
	pid := child.Process.Pid
	_ = child.Process.Kill()
	_ = child.Wait() // reaped: kill(2) of pid gives ESRCH until the PID is reused
	core, logs := observer.New(zap.WarnLevel)
	dir := t.TempDir()
	r, err := sidecar.NewReloader([]string{dir}, sidecar.SignalPID(pid, syscall.SIGHUP), sidecar.WithDebounce(5*time.Millisecond),
		sidecar.WithPollInterval(20*time.Millisecond), sidecar.WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	if err := sidecartest.WriteAtomic(dir, map[string]string{"conf": "1"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the miss logged", 10*time.Second, func() bool { return logs.FilterMessageSnippet("reached no process").Len() == 1 })
	e := logs.FilterMessageSnippet("reached no process").All()[0]
	if !strings.Contains(e.Message, "has exited, and is not signalled again") || strings.Contains(e.Message, "signals again") {
		t.Errorf("log %q: want it to say the process exited and is not signalled again", e.Message)
	}
	if err := fmt.Sprint(e.ContextMap()["error"]); !strings.Contains(err, fmt.Sprintf("process %d has exited", pid)) {
		t.Errorf("logged error %q: want it to say process %d exited", err, pid)
	}
}
