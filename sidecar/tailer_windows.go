//go:build windows

package sidecar

import (
	"os"
	"syscall"
)

// fileIdentity returns the identity of the open file f, which Windows has in place of device and
// inode: the volume serial number and the 64-bit file index (what os.SameFile compares), and its
// link count; ok is false when the handle cannot be queried. fi is not used: on Windows,
// FileInfo.Sys carries none of these.
//
// Limits, none of them tested on Windows: on ReFS the file index is 128 bits and its low 64 bits
// need not be unique (the fingerprint still tells two files with one identity apart). A file
// deleted while open keeps its link count until its last handle closes unless the delete had POSIX
// semantics, so it is noticed as gone by the directory scan rather than by its link count. And
// os.Open does not share FILE_SHARE_DELETE, so while the Tailer follows a file, renaming or
// deleting it (rotation) fails for others.
func fileIdentity(f *os.File, _ os.FileInfo) (id fileID, nlink uint64, ok bool) {
	var d syscall.ByHandleFileInformation
	if err := syscall.GetFileInformationByHandle(syscall.Handle(f.Fd()), &d); err != nil {
		return fileID{}, 0, false
	}
	return fileID{uint64(d.VolumeSerialNumber), uint64(d.FileIndexHigh)<<32 | uint64(d.FileIndexLow)}, uint64(d.NumberOfLinks), true
}
