package procgroup

import (
	"bytes"
	"os"
	"strconv"
)

// onlyZombies reports whether every process of group pgid that /proc lists has exited (state Z or
// X). It is false when /proc cannot be read.
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
	}
	return true
}
