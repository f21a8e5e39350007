//go:build unix

package shardproc

import (
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// dropRootAttr returns the attributes that start a child as user nobody when this process runs as
// root, else nil. memcached started as root switches to its -u user itself, and a change of user
// clears the parent-death signal (prctl(2)); a child that execs as nobody to begin with keeps it, as
// os/exec sets the signal after the user.
func dropRootAttr() *syscall.SysProcAttr {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid := uint32(65534), uint32(65534) // nobody and nogroup on Debian, when not in /etc/passwd
	if u, err := user.Lookup("nobody"); err == nil {
		if n, err := strconv.ParseUint(u.Uid, 10, 32); err == nil {
			uid = uint32(n)
		}
		if n, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
			gid = uint32(n)
		}
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
}
