package workqueue

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// killLeftGroup kills the process group that the command of dead worker's work directory dir
// started in (its id in dir's groupFile), if processes of it still run (a worker SIGKILLed leaves
// what its command started: the parent-death signal reaches the command alone) and one of them
// still shows it is the command's: its working directory is in dir, or its environment names dir's
// item file. So a group id that the kernel gave to another group since is not killed. It reports
// whether it killed the group.
func killLeftGroup(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, groupFile))
	if err != nil {
		return false
	}
	pgid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pgid <= 1 || syscall.Kill(-pgid, 0) != nil {
		return false
	}
	d, err := os.Open("/proc")
	if err != nil {
		return false
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return false
	}
	want := []byte(strconv.Itoa(pgid))
	env := []byte(EnvItemFile + "=" + filepath.Join(dir, "item") + "\x00")
	for _, n := range names {
		if n[0] < '0' || n[0] > '9' {
			continue
		}
		st, err := os.ReadFile("/proc/" + n + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid pgrp ...: the fields after the ")" that ends the command name.
		f := bytes.Fields(st[bytes.LastIndexByte(st, ')')+1:])
		if len(f) < 3 || !bytes.Equal(f[2], want) {
			continue
		}
		cwd, _ := os.Readlink("/proc/" + n + "/cwd")
		environ, _ := os.ReadFile("/proc/" + n + "/environ")
		if cwd == dir || strings.HasPrefix(cwd, dir+"/") || bytes.HasPrefix(environ, env) || bytes.Contains(environ, append([]byte{0}, env...)) {
			return syscall.Kill(-pgid, syscall.SIGKILL) == nil
		}
	}
	return false
}
