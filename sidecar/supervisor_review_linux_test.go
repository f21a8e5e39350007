package sidecar

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/syncbuf"
)

// A child run as `setsid CMD` (by default, without Child.Group). setsid(1) forks when it leads a
// group, which Setpgid made it when every child had a group of its own: the parent exited 0 at
// once, the Supervisor restarted it, and a new CMD was left behind each time.
func TestSupervisorSetsidChild(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("no setsid")
	}
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	s, err := NewSupervisor([]Child{{Path: "setsid", Args: []string{"sh", "-c", "echo pid $$; exec sleep 40"}, Stdout: out}},
		WithBackoff(func(int) time.Duration { return 50 * time.Millisecond }), WithGrace(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	done, cancel := runSupervisor(t, s)
	time.Sleep(2 * time.Second)
	cancel()
	waitRun(t, done, 10*time.Second)
	b, _ := os.ReadFile(out.Name())
	var alive []int
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if p, err := strconv.Atoi(strings.TrimPrefix(l, "pid ")); err == nil {
			if !processGone(p) {
				alive = append(alive, p)
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
	}
	t.Logf("restarts %d, output %q", s.Restarts(0), b)
	if s.Restarts(0) > 0 || len(alive) > 0 {
		t.Errorf("setsid child: %d restarts in 2s, %d copies of the program left running after Run returned: %v", s.Restarts(0), len(alive), alive)
	}
}

// A child that moved itself out of its group (into the Supervisor's, same session) is signalled
// all the same, with Child.Group or without. When every child had a group of its own, only the
// group was signalled: SIGTERM and SIGKILL went to an empty group, and Run waited for the child
// forever.
func TestSupervisorSignalsAChildThatLeftItsGroup(t *testing.T) {
	if _, err := exec.LookPath("perl"); err != nil {
		t.Skip("no perl")
	}
	for _, group := range []bool{false, true} {
		t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
			var out syncbuf.Buffer
			script := `$| = 1; setpgrp(0, ` + strconv.Itoa(syscall.Getpgrp()) + `) or die "setpgrp: $!"; print "pid $$\n"; sleep 30;`
			s, err := NewSupervisor([]Child{{Path: "perl", Args: []string{"-e", script}, Stdout: &out, Group: group}},
				WithGrace(300*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			done, cancel := runSupervisor(t, s)
			pid := grandchildPid(t, &out)
			began := time.Now()
			cancel()
			select {
			case <-done:
				t.Logf("Run returned after %v", time.Since(began))
			case <-time.After(8 * time.Second):
				_ = syscall.Kill(pid, syscall.SIGKILL)
				<-done
				t.Errorf("Run did not return within 8s of its context ending (grace 300ms): the child %d was never signalled", pid)
			}
		})
	}
}

// A child that exits 0 and leaves a job holding its output: its status is "exited 0", not
// "start: exec: WaitDelay expired before I/O complete" (Wait's error once the output wait of the
// grace period ran out). Without Child.Group the job is the child's business, and the output is
// waited for the grace period; with Child.Group the job is killed as soon as the child exited
// (it used to be killed only after the grace period, as the Supervisor saw the exit only then).
func TestSupervisorExitedChildLeftItsOutputHeld(t *testing.T) {
	for _, group := range []bool{false, true} {
		t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
			var out syncbuf.Buffer
			grace := 4 * time.Second
			if !group {
				grace = time.Second
			}
			s, err := NewSupervisor([]Child{{Path: "sh", Args: []string{"-c", "sleep 40 & echo pid $!; sleep 0.2; exit 0"}, Stdout: &out, Group: group}},
				WithBackoff(func(int) time.Duration { return time.Hour }), WithGrace(grace))
			if err != nil {
				t.Fatal(err)
			}
			done, _ := runSupervisor(t, s)
			pid := grandchildPid(t, &out)
			began := time.Now()
			if group {
				await.True(t, "the grandchild killed", 20*time.Second, func() bool { return processGone(pid) })
				if d := time.Since(began); d > 2*time.Second {
					t.Errorf("stray killed %v after the child exited (~0.2s): it waited out WaitDelay (grace %v)", d, grace)
				}
			}
			await.True(t, "status", 10*time.Second, func() bool { _, _, rows := s.Statusz(); return rows[0][3] != "running" })
			if _, _, rows := s.Statusz(); rows[0][3] != "exited 0" {
				t.Errorf("status %q, want \"exited 0\"", rows[0][3])
			}
			s.Done()
			waitRun(t, done, 10*time.Second)
		})
	}
}

// Pid reuse, with Child.Group. Run as root in a pid namespace of its own (as root:
// unshare -pf --mount-proc env REVB3_PIDNS=1 ./sidecar.test -test.run PidReuse): the child exits
// while a process outside its group holds its output, so Wait waits (WaitDelay) with the child
// collected and its pid free. An unrelated process that got that pid and led a group of its own was
// SIGKILLed when Wait returned; the group is now signalled only before the child is collected.
func TestSupervisorPidReuseSparesAnUnrelatedGroup(t *testing.T) {
	if os.Getenv("REVB3_PIDNS") == "" {
		t.Skip("run under unshare -pf --mount-proc with REVB3_PIDNS=1")
	}
	var out syncbuf.Buffer
	s, err := NewSupervisor([]Child{{Path: "sh", Args: []string{"-c", "setsid sleep 40 & sleep 0.5; echo pid $$; exit 0"}, Stdout: &out, Group: true}},
		WithBackoff(func(int) time.Duration { return time.Hour }), WithGrace(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	done, _ := runSupervisor(t, s)
	// The sh's own pid, the group id; the job has had 0.5s to leave the group (with Child.Group, a
	// job still in it when sh exits is killed, and its zombie, an orphan of process 1, holds the id).
	child := grandchildPid(t, &out)
	await.True(t, "the child reaped", 10*time.Second, func() bool {
		_, err := os.Stat("/proc/" + strconv.Itoa(child))
		return err != nil
	})
	var victim *exec.Cmd
	for range 20 {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(child-1)), 0); err != nil {
			t.Fatal(err)
		}
		c := exec.Command("sleep", "40")
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		if c.Process.Pid == child {
			victim = c
			break
		}
		_ = c.Process.Kill()
		_ = c.Wait()
		if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(child)); err == nil {
			t.Skipf("a thread of the test process took pid %d first; run again", child)
		}
	}
	if victim == nil {
		t.Fatal("could not get the pid again")
	}
	t.Logf("unrelated process %d (session and group leader) started with the child's old pid", victim.Process.Pid)
	waited := make(chan error, 1)
	go func() { waited <- victim.Wait() }()
	select {
	case err = <-waited: // killed
	case <-time.After(10 * time.Second): // past the output wait (3s) and the kill that followed it
		_ = victim.Process.Kill()
		<-waited
		err = nil
	}
	if ee, ok := err.(*exec.ExitError); ok {
		if ws := ee.Sys().(syscall.WaitStatus); ws.Signaled() {
			t.Errorf("the unrelated process was killed by %v: the Supervisor signalled a group that was no longer its child's", ws.Signal())
		}
	}
	s.Done()
	waitRun(t, done, 10*time.Second)
}

// On a terminal (REVB3_TTY=1 under script(1)), a child without Child.Group stays in the terminal's
// foreground group: when every child had a group of its own, it was in the background, stopped
// (SIGTTOU) when it set terminal attributes, or wrote to the terminal with tostop set.
func TestSupervisorChildOnATerminal(t *testing.T) {
	if os.Getenv("REVB3_TTY") == "" {
		t.Skip("run under script(1) with REVB3_TTY=1")
	}
	for _, tc := range []struct{ name, script string }{
		{"stty sane (tcsetattr)", `stty sane <&1; echo ok > "$0"`},
		{"write with tostop", `echo hello from the child; echo ok > "$0"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "write with tostop" {
				c := exec.Command("stty", "tostop")
				c.Stdin = os.Stdin
				if out, err := c.CombinedOutput(); err != nil {
					t.Fatalf("stty tostop: %v %s", err, out)
				}
				defer func() { c := exec.Command("stty", "-tostop"); c.Stdin = os.Stdin; _ = c.Run() }()
			}
			mark := filepath.Join(t.TempDir(), "mark")
			s, err := NewSupervisor([]Child{{Path: "sh", Args: []string{"-c", tc.script, mark}, Stdout: os.Stdout, Stderr: os.Stderr}},
				WithBackoff(func(int) time.Duration { return time.Hour }), WithGrace(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			// sh's stdin is /dev/null: give stty the terminal through stdout's fd.
			done, cancel := runSupervisor(t, s)
			ok := false
			for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if _, err := os.Stat(mark); err == nil {
					ok = true
					break
				}
			}
			cancel()
			waitRun(t, done, 10*time.Second)
			if !ok {
				t.Errorf("child did not get past its terminal use in 3s (stopped by SIGTTOU?)")
			}
		})
	}
}
