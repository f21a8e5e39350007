package main

import (
	"os"
	"syscall"
)

// growPipe raises the capacity of f to 1 MiB (the default limit for unprivileged processes) when f
// is a pipe, best effort. With the default 64 KiB a log collector reading the pipe in small pieces
// wakes logship for every few KiB it frees; a larger pipe lets logship write whole batches.
func growPipe(f *os.File) {
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return
	}
	const fSetPipeSz = 1031 // F_SETPIPE_SZ
	_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), fSetPipeSz, 1<<20)
}
