package main

import (
	"os"
	"syscall"
)

// growPipe raises the capacity of f to 1 MiB (the default limit for unprivileged processes) when f
// is a pipe, best effort. With the default 64 KiB a log collector reading the pipe in small pieces
// wakes logship for every few KiB it frees; a larger pipe lets logship write whole batches.
//
// The descriptor is reached through SyscallConn, not Fd: Fd switches it to blocking mode, a flag of
// the open file description that logship shares with its parent and every other process writing to
// the same pipe.
func growPipe(f *os.File) {
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	const fSetPipeSz = 1031 // F_SETPIPE_SZ
	_ = rc.Control(func(fd uintptr) {
		_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, fd, fSetPipeSz, 1<<20)
	})
}
