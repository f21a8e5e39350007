//go:build unix

package shardproc

import (
	"os"
	"syscall"
)

// stopProcess stops pr with SIGSTOP.
func stopProcess(pr *os.Process) error { return pr.Signal(syscall.SIGSTOP) }

// continueProcess continues pr with SIGCONT.
func continueProcess(pr *os.Process) error { return pr.Signal(syscall.SIGCONT) }
