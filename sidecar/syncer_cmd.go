package sidecar

import (
	"context"
	"errors"
	"os/exec"
	"time"

	"github.com/podblocks/podblocks/internal/procgroup"
	"github.com/podblocks/podblocks/internal/syncbuf"
)

// cmdWaitDelay bounds how long a command's run waits for its output to be closed once its own
// process has exited or was killed (exec.Cmd.WaitDelay): a process that left the command's group
// (setsid) may hold the output open for as long as it runs.
const cmdWaitDelay = 2 * time.Second

// groupCmd runs a program in a process group of its own (procgroup.Attr), as the workqueue's
// ExecWorker runs its command, so that whatever it starts (a shell's background jobs, git's
// transport helpers) ends with it:
//   - when ctx ends, the whole group is killed (exec.Cmd.Cancel);
//   - when the program's own process exits, what it left running in its group is killed, and
//     the run is done with the program's exit status, without waiting for the output to be
//     closed by another process holding it (beyond cmdWaitDelay).
//
// Without process groups (Windows) only the program's own process is killed. Where a process can
// be waited for without collecting it (procgroup.CanWaitExited, Linux), the group is killed before
// its id (the program's process id) can be given to another process; elsewhere right after, with
// a small window in which the id may have been reused.
type groupCmd struct {
	*exec.Cmd
	r procgroup.Reaper
}

// newGroupCmd returns the command running name with args, ended by ctx, as groupCmd describes.
func newGroupCmd(ctx context.Context, name string, args ...string) *groupCmd {
	g := &groupCmd{Cmd: exec.CommandContext(ctx, name, args...)}
	g.r.Cmd = g.Cmd
	g.SysProcAttr = procgroup.Attr()
	g.Cancel = g.r.Cancel
	g.WaitDelay = cmdWaitDelay
	return g
}

// Wait waits for the started command's process, kills what it left in its group, and returns the
// command's result: nil when it exited 0, even if a process outside its group held its output
// open for longer than cmdWaitDelay (exec.ErrWaitDelay).
func (g *groupCmd) Wait() error {
	err, waitErr := g.r.Wait()
	if waitErr != nil {
		_ = procgroup.Kill(g.Process) // collected by now: what it left in its group
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		return nil
	}
	return err
}

// CombinedOutput runs the command and returns its standard output and error, as exec.Cmd's does.
func (g *groupCmd) CombinedOutput() ([]byte, error) {
	var out syncbuf.Buffer // written by exec.Cmd's goroutine, which cmdWaitDelay may leave running
	g.Stdout, g.Stderr = &out, &out
	if err := g.Start(); err != nil {
		return nil, err
	}
	err := g.Wait()
	return out.Bytes(), err
}
