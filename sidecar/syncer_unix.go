//go:build unix

package sidecar

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// openDirNoFollow opens dir, failing when it is a symlink or not a directory (a FIFO swapped in
// would block a plain open).
func openDirNoFollow(dir string) (*os.File, error) {
	return os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
}

// lockFetchDir takes an exclusive flock(2) lock on the directory dir, which mkdirFetch has just
// made, waiting while a sweep holds it, and keeps it open until unlock. The lock goes with the open
// file description, so the kernel releases it when the process dies, SIGKILL included. It returns
// errFetchDirGone when dir is no longer the directory it locked (a sweep removed it meanwhile).
// Where the file system has no locks (ENOLCK, EOPNOTSUPP) the directory is used unlocked, and
// noLock says so. Held open, the directory's inode cannot be reused by one made anew at its path.
func lockFetchDir(dir string) (*fetchDir, error) {
	f, err := openDirNoFollow(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errFetchDirGone
	}
	if err != nil {
		return nil, err
	}
	var noLock error
	if err := flockFn(f, syscall.LOCK_EX); errors.Is(err, syscall.ENOLCK) || errors.Is(err, syscall.EOPNOTSUPP) {
		noLock = err
	} else if err != nil {
		f.Close()
		return nil, err
	}
	held, err1 := f.Stat()
	now, err2 := os.Lstat(dir)
	if err1 != nil || err2 != nil || !os.SameFile(held, now) {
		f.Close()
		return nil, errFetchDirGone
	}
	return &fetchDir{path: dir, held: held, noLock: noLock, unlock: func() { f.Close() }}, nil
}

// sweepLock takes the lock of the fetch directory dir, the directory fi describes, without waiting:
// ok is false when a live fetch holds it, or dir is not that directory any more.
func sweepLock(dir string, fi fs.FileInfo) (unlock func(), ok bool) {
	f, err := openDirNoFollow(dir)
	if err != nil {
		return nil, false
	}
	if ffi, err := f.Stat(); err != nil || !os.SameFile(fi, ffi) || flockFn(f, syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		f.Close()
		return nil, false
	}
	return func() { f.Close() }, true
}

// flockFn is flock; tests replace it to see file systems without locks.
var flockFn = flock

// flock applies flock(2) operation how to f, again when a signal interrupts it.
func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		for {
			if ferr = syscall.Flock(int(fd), how); ferr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	return ferr
}

// lockRoot takes an exclusive flock(2) lock on the lock file of root (made if need be), without
// waiting, writes holder into it, and keeps it open until unlock: the kernel releases the lock when
// the process dies, SIGKILL included. When another open of the file holds the lock (another Syncer,
// in this process or another one), it returns a *RootInUseError naming what that holder wrote.
// A lock file this process may not write (left by another user: an init container running as root,
// a changed runAsUser) or on a read-only root is opened read-only, which flock(2) locks as well; the
// holder is not written then. Where the file system has no locks (ENOLCK, EOPNOTSUPP), or the lock
// file cannot be opened at all (a read-only root without one, a file this user may not read),
// nothing is locked, and noLock says why.
func lockRoot(root, holder string) (unlock func(), noLock, err error) {
	path := filepath.Join(root, rootLock)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	readOnly := false
	if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EROFS) {
		rf, rerr := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if rerr != nil {
			return func() {}, fmt.Errorf("open %s: %w; read-only: %w", path, err, rerr), nil
		}
		f, err, readOnly = rf, nil, true
	}
	if err != nil {
		return nil, nil, err
	}
	switch err := flockFn(f, syscall.LOCK_EX|syscall.LOCK_NB); {
	case errors.Is(err, syscall.ENOLCK), errors.Is(err, syscall.EOPNOTSUPP),
		readOnly && errors.Is(err, syscall.EBADF): // NFS's flock(2) is an fcntl lock, which must be writable
		f.Close()
		return func() {}, err, nil
	case errors.Is(err, syscall.EWOULDBLOCK):
		b := make([]byte, 512)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		return nil, nil, &RootInUseError{Root: root, Holder: strings.TrimSpace(string(b[:n]))}
	case err != nil:
		f.Close()
		return nil, nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Who holds it, for the next one to name; the lock holds whether or not this is written.
	if !readOnly && f.Truncate(0) == nil {
		_, _ = f.WriteAt([]byte(holder+"\n"), 0)
	}
	return func() { f.Close() }, nil, nil
}
