//go:build !unix

package sidecar

import "os"

// openDirNoFollow opens dir. Without O_NOFOLLOW here, chmodDir's check that the descriptor is the
// directory Lstat saw is what keeps a symlink out.
func openDirNoFollow(dir string) (*os.File, error) {
	return os.Open(dir)
}
