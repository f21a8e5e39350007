//go:build unix

package procgroup

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Attr returns what starts a command (exec.Cmd's SysProcAttr) in a new process group whose id is the
// command's process id (Setpgid).
func Attr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// Signal sends sig to every process in the group of p, a command started with Attr. It returns
// os.ErrProcessDone when the group has no process left.
func Signal(p *os.Process, sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("procgroup: signal %v is not a syscall.Signal", sig)
	}
	err := syscall.Kill(-p.Pid, s)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// Alive reports whether the group of p, a command started with Attr, has a process left that runs.
// Processes that exited and wait for their parent to collect them (zombies) do not count where
// they can be told apart (Linux, from /proc): orphans of the group are collected by process 1,
// which in a container may be a program that never does.
func Alive(p *os.Process) bool {
	err := syscall.Kill(-p.Pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false // ESRCH: none left
	}
	return !onlyZombies(p.Pid)
}

// InOwnGroup reports whether p still leads the group it was started in with Attr, so that Signal
// reaches p itself: false once p moved to another group (setpgid, setsid), or has been collected.
func InOwnGroup(p *os.Process) bool {
	pg, err := syscall.Getpgid(p.Pid)
	return err == nil && pg == p.Pid
}
