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

	"github.com/podblocks/podblocks/sidecar"
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
