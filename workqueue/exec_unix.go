//go:build unix

package workqueue

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// makeWorkDir makes a fresh work directory for item id in root and locks it (flock) until release,
// which removes it and then unlocks it.
func makeWorkDir(root, id string) (dir string, release func(), err error) {
	for range 3 {
		dir, err = os.MkdirTemp(root, workDirPrefix+safeName(id)+"-")
		if err != nil {
			return "", nil, err
		}
		f, err := os.Open(dir)
		if err != nil {
			os.RemoveAll(dir)
			return "", nil, err
		}
		if err := flock(f, syscall.LOCK_EX); err != nil {
			f.Close()
			os.RemoveAll(dir)
			return "", nil, fmt.Errorf("lock %s: %w", dir, err)
		}
		// A sweep that listed the directory before the lock was taken removed it: make another.
		held, err1 := f.Stat()
		now, err2 := os.Lstat(dir)
		if err1 == nil && err2 == nil && os.SameFile(held, now) {
			return dir, func() {
				os.RemoveAll(dir)
				f.Close()
			}, nil
		}
		f.Close()
	}
	return "", nil, fmt.Errorf("%s: removed by sweeps three times", root)
}

// sweepWorkDirs removes the work directories in root that no process holds locked: those whose
// worker died before it could remove them, after it killed what their commands left running there
// (killLeftGroup). It returns how many it removed.
func sweepWorkDirs(root string) (int, error) {
	des, err := os.ReadDir(root)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, de := range des {
		if !de.IsDir() || !strings.HasPrefix(de.Name(), workDirPrefix) {
			continue
		}
		dir := filepath.Join(root, de.Name())
		f, err := os.Open(dir)
		if err != nil {
			continue // gone meanwhile, or not ours to open
		}
		if flock(f, syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			// Nobody holds it: its worker is dead. Held while removing it, so that a worker that
			// has just made it waits, sees it gone, and makes another.
			killLeftGroup(dir)
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, err)
			} else {
				n++
			}
		}
		f.Close()
	}
	return n, errors.Join(errs...)
}

// recordGroup writes the process group id of the command started in work directory dir to dir's
// groupFile, for the sweep of a worker that finds the directory after this one died.
func recordGroup(dir string, pgid int) error {
	return os.WriteFile(filepath.Join(dir, groupFile), []byte(strconv.Itoa(pgid)+"\n"), 0o600)
}

// flock applies flock(2) operation how to f, retrying when a signal interrupts it.
func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			return err
		}
	}
}

// readBuffered copies to dst what pipe r holds, up to max bytes, without waiting for more. r's
// reads have failed at their deadline (outputPipe.stop), so it reads the descriptor itself, which
// is non-blocking (os.Pipe makes it so where reads can have deadlines).
func readBuffered(r *os.File, dst io.Writer, buf []byte, max int) {
	rc, err := r.SyscallConn()
	if err != nil {
		return
	}
	for max > 0 {
		var n int
		var rerr error
		if err := rc.Control(func(fd uintptr) { n, rerr = syscall.Read(int(fd), buf[:min(len(buf), max)]) }); err != nil {
			return
		}
		if rerr == syscall.EINTR {
			continue
		}
		if rerr != nil || n <= 0 { // EAGAIN: read all it holds; 0: no writers left
			return
		}
		dst.Write(buf[:n])
		max -= n
	}
}

// exitSignal is the signal that killed the process of ps, or nil if it exited.
func exitSignal(ps *os.ProcessState) os.Signal {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal()
	}
	return nil
}

// signalName names s with its number, as "9 (killed)".
func signalName(s os.Signal) string {
	if n, ok := s.(syscall.Signal); ok {
		return fmt.Sprintf("%d (%v)", int(n), n)
	}
	return s.String()
}
