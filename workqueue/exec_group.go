package workqueue

import (
	"os/exec"

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
