package workqueue

import (
	"os"
	"os/exec"
	"sync"

	"github.com/podblocks/podblocks/internal/procgroup"
)

// groupAttr starts the command in a process group of its own, so that killGroup reaches everything
// it started; without process groups (Windows) it is nil, and the command starts as usual.
var groupAttr = procgroup.Attr

// killGroup kills the command's process group (on Windows the command's own process only: processes
// it started are left running). A variable for tests, which look at when it is called.
var killGroup = func(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	return procgroup.Kill(cmd.Process)
}

// groupReaper waits for a started command and kills what it left in its process group. The group's
// id is the command's process id, which the kernel may give to an unrelated process (leading a
// group of its own) as soon as the command's process has been collected: so, where it can
// (procgroup.CanWaitExited, Linux), it waits for the command to exit without collecting it, kills
// the group, and only then lets exec.Cmd.Wait collect it. Elsewhere the group is killed right
// after Wait, as before: a small window remains in which its id may have been reused.
type groupReaper struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	exited bool // the command's process exited (seen by procgroup.WaitExited): cancel kills no more
}

// cancel is the command's exec.Cmd.Cancel: it kills the group while the command runs. Once the
// command has exited, wait kills the group, and cancel returns os.ErrProcessDone (exec.Cmd then
// reports the command's exit status as it is).
func (g *groupReaper) cancel() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.exited {
		return os.ErrProcessDone
	}
	return killGroup(g.cmd)
}

// wait waits for the command, kills what it left running in its group, and returns cmd.Wait's
// result. A WaitExited failure (none is expected for a child of ours) is returned as waitErr: the
// group is then not killed, since the command may still run, and Wait collects it as usual.
func (g *groupReaper) wait() (err, waitErr error) {
	if !procgroup.CanWaitExited {
		err = g.cmd.Wait()
		_ = killGroup(g.cmd) // anything the command left running in its group
		return err, nil
	}
	waitErr = procgroup.WaitExited(g.cmd.Process)
	if waitErr == nil {
		g.mu.Lock()
		g.exited = true
		_ = killGroup(g.cmd) // anything the command left running in its group, before its id is free
		g.mu.Unlock()
	}
	return g.cmd.Wait(), waitErr
}
