// Package procgroup starts a command in a process group of its own and signals the whole group, so
// that what the command started (a shell's background jobs, a server's workers) is stopped with it.
// Without process groups (Windows) it starts the command as usual and signals its own process only.
//
// A group is named by its first process's id, which the kernel does not give to another process
// while that process, running or exited but not yet collected (waited for), or any process of the
// group is left. Once its first process has been collected, the group may be empty and its id
// reused by an unrelated group: signal a group only before its first process is collected
// (WaitExited tells, on Linux, that it exited without collecting it).
package procgroup

import "os"

// Kill sends SIGKILL to the process group of p (see Signal).
func Kill(p *os.Process) error { return Signal(p, os.Kill) }
