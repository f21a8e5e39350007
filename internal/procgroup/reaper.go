package procgroup

import (
	"os"
	"os/exec"
	"sync"
)

// Reaper waits for a command started with Attr and kills what it left running in its process group.
// The group's id is the command's process id, which the kernel may give to an unrelated process
// (leading a group of its own) as soon as the command's process has been collected: so, where it can
// (CanWaitExited, Linux), Wait waits for the command to exit without collecting it, kills the group,
// and only then lets exec.Cmd.Wait collect it. Elsewhere the group is killed right after
// exec.Cmd.Wait: a small window remains in which its id may have been reused.
type Reaper struct {
	Cmd *exec.Cmd
	// KillGroup kills the command's group; nil is Kill of the command's process.
	KillGroup func(*exec.Cmd) error

	mu     sync.Mutex
	exited bool // the command's process exited (seen by WaitExited): Cancel kills no more
}

func (r *Reaper) kill() error {
	if r.KillGroup != nil {
		return r.KillGroup(r.Cmd)
	}
	if r.Cmd.Process == nil {
		return nil
	}
	return Kill(r.Cmd.Process)
}

// Cancel is the command's exec.Cmd.Cancel: it kills the group while the command runs. Once the
// command has exited, Wait kills the group, and Cancel returns os.ErrProcessDone (exec.Cmd then
// reports the command's exit status as it is).
func (r *Reaper) Cancel() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.exited {
		return os.ErrProcessDone
	}
	return r.kill()
}

// Wait waits for the started command, kills what it left running in its group, and returns
// exec.Cmd.Wait's result. A WaitExited failure (none is expected for a child of ours) is returned
// as waitErr: the group is then not killed, since the command may still run, and exec.Cmd.Wait
// collects it as usual.
func (r *Reaper) Wait() (err, waitErr error) {
	if !CanWaitExited {
		err = r.Cmd.Wait()
		_ = r.kill() // anything the command left running in its group
		return err, nil
	}
	waitErr = WaitExited(r.Cmd.Process)
	if waitErr == nil {
		r.mu.Lock()
		r.exited = true
		_ = r.kill() // anything the command left running in its group, before its id is free
		r.mu.Unlock()
	}
	return r.Cmd.Wait(), waitErr
}
