//go:build !unix

package workqueue

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
)

// errNoWorkDirLocks is what sweepWorkDirs returns where work directories cannot be locked (no
// flock(2), as on Windows): the directories of killed workers are left in the work root.
var errNoWorkDirLocks = fmt.Errorf("workqueue: work-dir locks are not supported on %s, work directories of dead workers are not removed: %w",
	runtime.GOOS, errors.ErrUnsupported)

// makeWorkDir makes a fresh work directory for item id in root; release removes it. Without
// work-dir locks it is not locked, and not held open (on Windows an open directory cannot be
// removed).
func makeWorkDir(root, id string) (dir string, release func(), err error) {
	dir, err = os.MkdirTemp(root, workDirPrefix+safeName(id)+"-")
	if err != nil {
		return "", nil, err
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// sweepWorkDirs removes nothing: without locks a dead worker's directory cannot be told from a
// live one's. It returns errNoWorkDirLocks, which the first Handle logs.
func sweepWorkDirs(string) (int, error) { return 0, errNoWorkDirLocks }

// recordGroup records nothing: without process groups there is none to kill on a sweep, which
// removes nothing anyway.
func recordGroup(string, int) error { return nil }

// readBuffered reads nothing: without non-blocking reads of the descriptor (Windows pipes have no
// deadlines, and outputPipe.stop closes them) what a pipe holds after stop is dropped.
func readBuffered(*os.File, io.Writer, []byte, int) {}

// exitSignal is nil: without wait statuses that carry a signal (Windows), a killed process has an
// exit code of its own.
func exitSignal(*os.ProcessState) os.Signal { return nil }

// signalName names s.
func signalName(s os.Signal) string { return s.String() }
