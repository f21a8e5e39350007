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
// many bytes it asked for: only whole folios in the range, and of them not one that a writer
// dirtied (the call starts writing those back) or maps. Errors are ignored: the pages then stay.
func dropCached(f *os.File, off, end int64) int64 {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	_ = rc.Control(func(fd uintptr) { _ = unix.Fadvise(int(fd), off, end-off, unix.FADV_DONTNEED) })
	return end - off
}
