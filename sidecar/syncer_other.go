//go:build !unix

package sidecar

import (
	"errors"
	"io/fs"
	"os"
)

// openDirNoFollow opens dir. Without O_NOFOLLOW here, chmodDir's check that the descriptor is the
// directory Lstat saw is what keeps a symlink out.
func openDirNoFollow(dir string) (*os.File, error) {
	return os.Open(dir)
}

// lockFetchDir locks nothing where there is no flock(2) (Windows), and holds nothing open: an open
// directory could not be renamed to the revision there.
// The directory made is told from one made anew at its path by its file ID.
func lockFetchDir(dir string) (*fetchDir, error) {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errFetchDirGone
	}
	if err != nil {
		return nil, err
	}
	return &fetchDir{path: dir, held: fi, unlock: func() {}}, nil
}

// sweepLock never locks where there is no flock(2): a killed fetch's directory cannot be told from
// a live one's, so the sweep removes none.
func sweepLock(string, fs.FileInfo) (unlock func(), ok bool) { return nil, false }

// lockRoot locks nothing where there is no flock(2) (Windows): a second Syncer on the root is not
// refused there.
func lockRoot(string, string) (unlock func(), noLock, err error) {
	return func() {}, errors.ErrUnsupported, nil
}
