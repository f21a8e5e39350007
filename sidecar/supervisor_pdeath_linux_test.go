package sidecar

import (
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

// A Supervisor's process SIGKILLed takes its children with it (a parent-death signal): they used to
// run on, unsupervised, beside the copies a restarted Supervisor would start.
//
// No test here shows the thread that started a child outliving other threads' ends (what
// supervise's runtime.LockOSThread is for): the goroutine waiting for the child runs on that thread
// next, and blocks it in wait(2) while the child lives, with or without the lock, so ending
// hundreds of other threads killed no child either way.
func TestSupervisorChildDiesWithSupervisorProcess(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "child.pid")
	sup := exec.Command(os.Args[0], "-test.run=^$")
	sup.Env = append(os.Environ(), "SIDECAR_SUPERVISOR_CHILD=1", "SUP_PIDFILE="+pidfile)
	sup.Stdout, sup.Stderr = os.Stderr, os.Stderr
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sup.Process.Kill(); _ = sup.Wait() })
	var pid int
	await.True(t, "the child's pid", 20*time.Second, func() bool {
		b, err := os.ReadFile(pidfile)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	t.Cleanup(func() {
		if !processGone(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if err := sup.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = sup.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d still runs 10s after its Supervisor's process was SIGKILLed", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
