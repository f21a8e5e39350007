//go:build unix

package sidecar

import (
	"os"
	"syscall"
)

// openDirNoFollow opens dir, failing when it is a symlink or not a directory (a FIFO swapped in
// would block a plain open).
func openDirNoFollow(dir string) (*os.File, error) {
	return os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
}
