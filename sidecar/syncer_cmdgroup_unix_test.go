//go:build unix

package sidecar

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
)

// cmdBound is how long a command's run may take past its own process's end or its ctx's end in
// these tests: the old code took as long as the background job held the output pipe (30 s here).
const cmdBound = 5 * time.Second

// killPIDFile kills the process whose id is in file, if any: what a failing run left behind.
func killPIDFile(file string) {
	b, err := os.ReadFile(file)
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// gone reports whether no process has pid, or it has exited (a zombie that process 1 of this
// container may never collect: the job was the shell's child).
func gone(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false // no /proc: only the signal can tell
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

// TestExecEndsWithItsProcess: an Exec hook whose shell starts a background job and exits is done
// when the shell exits, with its status, and the job (left in the hook's process group) is
// killed. The old code's CombinedOutput waited until the job closed the output pipe: 30 s here,
// holding the hooks after it and SIGTERM.
func TestExecEndsWithItsProcess(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "job.pid")
	t.Cleanup(func() { killPIDFile(pidfile) })
	start := time.Now()
	err := Exec("sh", "-c", `sleep 30 & echo $! > "$0"; echo started`, pidfile)(context.Background())
	if took := time.Since(start); took > cmdBound {
		t.Errorf("Exec of a shell that left a background job took %v, want under %v", took.Round(time.Millisecond), cmdBound)
	}
	if err != nil {
		t.Errorf("Exec = %v, want nil (the shell exited 0)", err)
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	await.True(t, "the background job killed", 10*time.Second, func() bool { return gone(pid) })

	err = Exec("sh", "-c", `sleep 30 & echo oops; exit 3`)(context.Background())
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "oops") {
		t.Errorf("Exec of a failing shell = %v, want its exit status and output", err)
	}
}

// TestExecCanceledKillsTheGroup: the ctx's end kills the hook's whole process group, so the run
// ends at once even when a background job holds the output pipe.
func TestExecCanceledKillsTheGroup(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "job.pid")
	t.Cleanup(func() { killPIDFile(pidfile) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Exec("sh", "-c", `sleep 30 & echo $! > "$0"; wait`, pidfile)(ctx) }()
	await.True(t, "the job started", 10*time.Second, func() bool { _, err := os.Stat(pidfile); return err == nil })
	start := time.Now()
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(cmdBound):
		t.Errorf("Exec ran on for %v after its ctx ended", cmdBound)
		killPIDFile(pidfile)
		err = <-done
	}
	if err == nil {
		t.Error("canceled Exec = nil, want an error")
	}
	t.Logf("returned %v after the cancel: %v", time.Since(start).Round(time.Millisecond), err)
}

// TestGitSourceHungTransportCanceled: a git fetch stuck in its transport (here `ext::sleep 30`)
// ends, with the processes it started, as soon as the ctx ends. The old code killed git alone,
// and waited for the transport's sleep, which held the output pipe: 30 s, holding SIGTERM.
func TestGitSourceHungTransportCanceled(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git binary")
	}
	t.Setenv("GIT_CONFIG_COUNT", "1")
	t.Setenv("GIT_CONFIG_KEY_0", "protocol.ext.allow")
	t.Setenv("GIT_CONFIG_VALUE_0", "always")
	dir := t.TempDir()
	src := &GitSource{Repo: "ext::sleep 30", Cache: filepath.Join(dir, "cache")}
	fetch := filepath.Join(dir, "fetch")
	if err := os.Mkdir(fetch, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := src.Fetch(ctx, "", fetch); done <- err }()
	<-ctx.Done()
	start := time.Now()
	var err error
	select {
	case err = <-done:
	case <-time.After(cmdBound):
		t.Errorf("Fetch ran on for %v after its ctx ended", cmdBound)
		err = <-done
	}
	if err == nil || errors.Is(err, ErrBadArchive) {
		t.Errorf("Fetch = %v, want the fetch's error", err)
	}
	t.Logf("returned %v after the ctx ended: %v", time.Since(start).Round(time.Millisecond), err)
}
