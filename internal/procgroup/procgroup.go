// Package procgroup starts a command in a process group of its own and signals the whole group, so
// that what the command started (a shell's background jobs, a server's workers) is stopped with it.
// Without process groups (Windows) it starts the command as usual and signals its own process only.
//
// A group is named by its first process's id, which the kernel does not give to another process
// while any process of the group is left. Once the group is empty and its first process has been
// waited for, the id may be reused: signal a group only while its first process is running, right
// after waiting for it, or while Alive reports it.
package procgroup

import "os"

// Kill sends SIGKILL to the process group of p (see Signal).
func Kill(p *os.Process) error { return Signal(p, os.Kill) }
