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
// semantics, so it is noticed as gone by the directory scan rather than by its link count.
func fileIdentity(f *os.File, _ os.FileInfo) (id fileID, nlink uint64, ok bool) {
	var d syscall.ByHandleFileInformation
	if err := syscall.GetFileInformationByHandle(syscall.Handle(f.Fd()), &d); err != nil {
		return fileID{}, 0, false
	}
	return fileID{uint64(d.VolumeSerialNumber), uint64(d.FileIndexHigh)<<32 | uint64(d.FileIndexLow)}, uint64(d.NumberOfLinks), true
}

// openLog opens a listed file for reading, sharing read, write and delete access, so that the
// writer can go on appending and can rename or delete the file (rotation) while the Tailer holds it
// open: os.Open does not share delete access, and with it every rename or delete of a followed file
// failed with a sharing violation. FILE_FLAG_BACKUP_SEMANTICS, as os.Open sets it, lets a directory
// that matches a pattern be opened, to be turned away as not a regular file. The handle is not
// inherited by child processes.
func openLog(path string) (*os.File, error) {
	p, err := syscall.UTF16PtrFromString(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	h, err := syscall.CreateFile(p, syscall.GENERIC_READ,
		syscall.FILE_SHARE_READ|syscall.FILE_SHARE_WRITE|syscall.FILE_SHARE_DELETE, nil,
		syscall.OPEN_EXISTING, syscall.FILE_ATTRIBUTE_NORMAL|syscall.FILE_FLAG_BACKUP_SEMANTICS, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(h), path), nil
}
