package procgroup

import (
	"bytes"
	"errors"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// WaitExited waits until p, a child of this process, has exited, and leaves it to be collected
// (waitid with WNOWAIT): until os.Process.Wait (or exec.Cmd.Wait) collects it, its process id, and
// so the id of the group it leads, cannot be given to another process, and the group can still be
// signalled safely.
func WaitExited(p *os.Process) error {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// onlyZombies reports whether /proc lists at least one process of group pgid and every one it lists
// has exited (state Z or X). It is false when /proc cannot be read, or lists none of the group (a
// /proc of another pid namespace, or mounted with hidepid): nothing is known then.
func onlyZombies(pgid int) bool {
	d, err := os.Open("/proc")
	if err != nil {
		return false
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return false
	}
	want := []byte(strconv.Itoa(pgid))
	found := false
	for _, n := range names {
		if n[0] < '0' || n[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + n + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid pgrp ...: the fields after the ")" that ends the command name.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(b[i+1:])
		if len(f) < 3 || !bytes.Equal(f[2], want) {
			continue
		}
		if s := f[0]; len(s) != 1 || s[0] != 'Z' && s[0] != 'X' {
			return false
		}
		found = true
	}
	return found
}

// CanWaitExited is true: WaitExited works here.
const CanWaitExited = true
