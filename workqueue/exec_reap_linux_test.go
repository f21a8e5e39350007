package workqueue

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// hookKillGroup has f see each killGroup call (before the group is killed) for the rest of the test.
func hookKillGroup(t *testing.T, f func(cmd *exec.Cmd)) {
	real := killGroup
	killGroup = func(cmd *exec.Cmd) error {
		f(cmd)
		return real(cmd)
	}
	t.Cleanup(func() { killGroup = real })
}

// procState is the state letter /proc gives process pid ("Z": exited, not collected), or "" when
// /proc lists no such process.
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	if f := bytes.Fields(b[i+1:]); i >= 0 && len(f) > 0 {
		return string(f[0])
	}
	return ""
}

// After a normal exit, what the command left in its group is killed while the command's process
// has exited but is not yet collected (a zombie), so that the group's id, its process id, cannot
// have been given to another process. It used to be killed after exec.Cmd.Wait collected it.
func TestExecWorkerKillsItsGroupBeforeCollecting(t *testing.T) {
	w, err := NewExecWorker([]string{"sh", "-c", "exit 0"})
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	hookKillGroup(t, func(cmd *exec.Cmd) { states = append(states, procState(cmd.Process.Pid)) })
	if err := w.Handle(context.Background(), &Item{ID: "reap", Payload: []byte("x"), Attempt: 1}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if len(states) != 1 || states[0] != "Z" {
		t.Errorf("states of the command's process when its group was killed: %q, want [\"Z\"] (exited, not collected; \"\": collected)", states)
	}
}

// Pid reuse (the technique of sidecar's TestSupervisorPidReuseSparesAnUnrelatedGroup): as root, the
// test runs itself again in a pid namespace of its own (unshare -pf --mount-proc), where it can
// choose the next pid (ns_last_pid). When the group of a command that exited is killed, it starts an
// unrelated process leading a session and group of its own with the command's pid, if that pid is
// free: it was, once Wait had collected the command, and the unrelated process was SIGKILLed.
func TestExecWorkerPidReuseSparesAnUnrelatedGroup(t *testing.T) {
	if os.Getenv("WORKQUEUE_PIDNS") == "" {
		if os.Geteuid() != 0 {
			t.Skip("needs root, to run in a pid namespace of its own")
		}
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			t.Skip("no unshare(1)")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c := exec.CommandContext(ctx, unshare, "-pf", "--mount-proc", os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
		c.Env = append(os.Environ(), "WORKQUEUE_PIDNS=1")
		out, err := c.CombinedOutput()
		if err != nil && bytes.Contains(out, []byte("unshare failed")) {
			t.Skipf("unshare -pf --mount-proc: %v: %s", err, out)
		}
		t.Logf("in a pid namespace:\n%s", out)
		if err != nil {
			t.Errorf("in a pid namespace: %v", err)
		}
		return
	}
	w, err := NewExecWorker([]string{"sh", "-c", "exit 0"})
	if err != nil {
		t.Fatal(err)
	}
	var victim *exec.Cmd
	hookKillGroup(t, func(cmd *exec.Cmd) {
		pid := cmd.Process.Pid
		for range 20 {
			if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
				t.Errorf("ns_last_pid: %v", err)
				return
			}
			c := exec.Command("sleep", "40")
			c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if err := c.Start(); err != nil {
				t.Errorf("start: %v", err)
				return
			}
			if c.Process.Pid == pid {
				victim = c
				return
			}
			_ = c.Process.Kill()
			_ = c.Wait()
		}
		t.Logf("pid %d still held by the command when its group was killed: no other process got it", pid)
	})
	if err := w.Handle(context.Background(), &Item{ID: "reuse", Payload: []byte("x"), Attempt: 1}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if victim == nil {
		return
	}
	t.Logf("unrelated process %d (session and group leader) started with the command's pid", victim.Process.Pid)
	waited := make(chan error, 1)
	go func() { waited <- victim.Wait() }()
	select {
	case err = <-waited: // killed
	case <-time.After(time.Second):
		_ = victim.Process.Kill()
		<-waited
		err = nil
	}
	if ee, ok := err.(*exec.ExitError); ok {
		if ws := ee.Sys().(syscall.WaitStatus); ws.Signaled() {
			t.Errorf("the unrelated process was killed by %v: the ExecWorker killed a group that was no longer its command's", ws.Signal())
		}
	}
}
