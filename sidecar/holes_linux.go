//go:build linux

package sidecar

import (
	"os"

	"golang.org/x/sys/unix"
)

// seekData returns the offset of f's first byte at or after off that the file system reports as
// data, not a hole (lseek(2)'s SEEK_DATA); ENXIO when there is none before the file's end.
func seekData(f *os.File, off int64) (int64, error) { return f.Seek(off, unix.SEEK_DATA) }

// seekHole returns the offset of f's first hole at or after off (lseek(2)'s SEEK_HOLE; the file's
// end counts as one); ENXIO when off is at or past the file's end.
func seekHole(f *os.File, off int64) (int64, error) { return f.Seek(off, unix.SEEK_HOLE) }

// dropCached drops the clean pages of f's bytes from off up to end from the page cache
// (posix_fadvise(2)'s POSIX_FADV_DONTNEED), as the kernel's reclaim may at any time, and returns how
// many bytes it asked to drop (0 when it could not ask): only whole folios in the range, and of
// them not one that a writer dirtied (the call starts writing those back) or maps. Errors are
// ignored: the pages then stay. An empty range asks nothing (a length of 0 would mean "to the end").
func dropCached(f *os.File, off, end int64) int64 {
	if end <= off {
		return 0
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	asked := false
	_ = rc.Control(func(fd uintptr) { asked = unix.Fadvise(int(fd), off, end-off, unix.FADV_DONTNEED) == nil })
	if !asked {
		return 0
	}
	return end - off
}
