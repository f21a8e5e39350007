//go:build unix

package shardproc

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
	"time"
)

// stopProcess stops pr with SIGSTOP and waits until it has stopped (see waitStopped).
func stopProcess(pr *os.Process) error {
	if err := pr.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	return waitStopped(pr.Pid, 5*time.Second)
}

// continueProcess continues pr with SIGCONT.
func continueProcess(pr *os.Process) error { return pr.Signal(syscall.SIGCONT) }

// waitStopped waits until every thread of pid shows as stopped in /proc/<pid>/task (Linux).
// kill(2) returns before SIGSTOP has taken effect: each thread stops as it next leaves the kernel,
// so a thread of a multithreaded server that is running, or just woken, can still answer a request
// sent right after the signal. Where /proc has no task list it returns at once.
func waitStopped(pid int, limit time.Duration) error {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	deadline := time.Now().Add(limit)
	for {
		tasks, err := os.ReadDir(dir)
		if err != nil {
			return nil
		}
		stopped := true
		for _, t := range tasks {
			if !threadStopped(dir + "/" + t.Name() + "/stat") {
				stopped = false
				break
			}
		}
		if stopped {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("shardproc: process %d not stopped %v after SIGSTOP", pid, limit)
		}
		time.Sleep(time.Millisecond)
	}
}

// threadStopped reports whether the thread whose stat file is path is stopped (state T), or gone.
func threadStopped(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return true // the thread has exited
	}
	// The state is the field after the ") " that closes the command name.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'T'
}
