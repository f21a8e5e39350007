//go:build !linux

package sidecar

import (
	"errors"
	"os"
)

// seekData and seekHole find data and holes on Linux only (see holes_linux.go); elsewhere the
// whole file is read as data.
func seekData(*os.File, int64) (int64, error) { return 0, errors.ErrUnsupported }
func seekHole(*os.File, int64) (int64, error) { return 0, errors.ErrUnsupported }

// dropCached drops pages from the page cache on Linux only (see holes_linux.go).
func dropCached(*os.File, int64, int64) int64 { return 0 }
