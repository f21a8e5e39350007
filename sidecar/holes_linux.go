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
