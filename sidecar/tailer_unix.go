//go:build unix

package sidecar

import (
	"os"
	"syscall"
)

// fileIdentity returns the device and inode of the file fi describes, and its link count; ok is
// false when fi carries no stat(2) data. f, the open file fi came from, is not used on Unix.
func fileIdentity(_ *os.File, fi os.FileInfo) (id fileID, nlink uint64, ok bool) {
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, 0, false
	}
	return fileID{uint64(sys.Dev), uint64(sys.Ino)}, uint64(sys.Nlink), true //nolint:unconvert // int types differ by platform
}

// openLog opens a listed file for reading; O_NONBLOCK keeps the open of a named pipe from blocking
// (it is then turned away as not a regular file).
func openLog(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}
