package sidecar

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/syncbuf"
)

// processGone reports whether pid has exited: no longer in /proc, or a zombie (an orphan waits
// there for process 1 to collect it, which in a container may never happen).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X')
}

// leftGroup reports whether pid leads a process group of its own, as after setsid.
func leftGroup(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(string(b[i+1:])) // state ppid pgrp ...
	return len(f) > 2 && f[2] == strconv.Itoa(pid)
}

var pidLine = regexp.MustCompile(`(?m)^pid (\d+)$`)

// grandchildPid waits for the line "pid N" in out and returns N.
func grandchildPid(t *testing.T, out *syncbuf.Buffer) int {
	t.Helper()
	var m []string
	await.True(t, "the grandchild's pid in the output", 10*time.Second, func() bool {
		m = pidLine.FindStringSubmatch(out.String())
		return m != nil
	})
	pid, err := strconv.Atoi(m[1])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !processGone(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return pid
}

// TestSupervisorStopsTheChildsGroup stops children that started jobs of their own (a shell's
// background jobs). A job holding the output used to keep Run waiting for as long as it ran (40s
// instead of about the grace period); it no longer does, with Child.Group or without. Without
// Child.Group the jobs are the child's business; with it they are signalled with the child, and a
// job not holding the output, which used to run on, is told to stop.
func TestSupervisorStopsTheChildsGroup(t *testing.T) {
	for _, tc := range []struct {
		name string
		// script runs as sh -c, with $0 a file the job may write; it prints "pid N" for its job.
		script   string
		grace    time.Duration
		min, max time.Duration // how long Run may take once its context ended
		mark     string        // what the job writes to $0 when it stops ("": nothing)
		outside  bool          // the job left the group: it is not signalled
	}{
		{name: "job holding the output", script: "sleep 40 & echo pid $!; wait", grace: time.Second, max: 5 * time.Second},
		// The group ignores SIGTERM: all of it is killed after the grace period.
		{name: "group ignoring SIGTERM", script: "trap '' TERM; sleep 40 & echo pid $!; wait",
			grace: 300 * time.Millisecond, min: 250 * time.Millisecond, max: 5 * time.Second},
		// The shell ends at SIGTERM at once; its job, which gets SIGTERM too, has the rest of the grace
		// period to finish: Run waits for it, without waiting out the grace. The job does not hold the
		// output, so that Run's wait for the output does not wait for it.
		{name: "job shutting down", script: `sh -c 'trap "sleep 0.2; echo graceful > \"$0\"; exit 0" TERM; echo pid $$; exec >/dev/null; while :; do sleep 0.05; done' "$0" & wait`,
			grace: 20 * time.Second, max: 10 * time.Second, mark: "graceful\n"},
		// A job that left the group is not signalled, but when it holds the output, Run waits for
		// the output for the grace period at most.
		{name: "job outside the group", script: "setsid sleep 40 & echo pid $!; wait",
			grace: 500 * time.Millisecond, max: 5 * time.Second, outside: true},
	} {
		for _, group := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/group=%v", tc.name, group), func(t *testing.T) {
				if _, err := exec.LookPath("setsid"); err != nil && tc.outside {
					t.Skip("setsid not installed")
				}
				mark := filepath.Join(t.TempDir(), "stopped")
				var out syncbuf.Buffer
				s, err := NewSupervisor([]Child{{Name: "sh", Path: "sh", Args: []string{"-c", tc.script, mark}, Stdout: &out, Group: group}},
					WithGrace(tc.grace))
				if err != nil {
					t.Fatal(err)
				}
				done, cancel := runSupervisor(t, s)
				job := grandchildPid(t, &out)
				if tc.outside {
					// The shell prints the job's pid as it starts it, perhaps before the job has
					// left the group: signalled then, it is rightly stopped.
					await.True(t, "the job leaving the group", 10*time.Second, func() bool { return leftGroup(job) })
				}
				began := time.Now()
				cancel()
				waitRun(t, done, tc.max+20*time.Second)
				if d := time.Since(began); d < tc.min || d > tc.max {
					t.Errorf("Run returned %v after its context ended; want %v to %v (grace %v)", d, tc.min, tc.max, tc.grace)
				}
				if !group {
					return // the job is the child's business: not signalled
				}
				if gone := processGone(job); gone == tc.outside {
					t.Errorf("job %d gone after Run returned: %v, want %v", job, gone, !tc.outside)
				}
				if tc.mark != "" {
					if b, err := os.ReadFile(mark); err != nil || string(b) != tc.mark {
						t.Errorf("the job did not finish its shutdown: %q, %v", b, err)
					}
				}
			})
		}
	}
}

// With Child.Group, what a child leaves running in its group when it exits on its own is killed, as
// the processes of a container go with its main process; it used to run on, and pile up with every
// restart.
func TestSupervisorKillsWhatAnExitedChildLeft(t *testing.T) {
	var out syncbuf.Buffer
	s, err := NewSupervisor([]Child{{Path: "sh", Args: []string{"-c", "sleep 40 >/dev/null & echo pid $!"}, Stdout: &out, Group: true}},
		WithBackoff(func(int) time.Duration { return time.Hour }))
	if err != nil {
		t.Fatal(err)
	}
	done, _ := runSupervisor(t, s)
	pid := grandchildPid(t, &out)
	await.True(t, "the child's exit", 10*time.Second, func() bool { _, _, rows := s.Statusz(); return rows[0][3] == "exited 0" })
	await.True(t, "the grandchild killed", 10*time.Second, func() bool { return processGone(pid) })
	s.Done()
	waitRun(t, done, 10*time.Second)
}
