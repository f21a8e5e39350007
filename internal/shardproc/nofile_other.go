//go:build !unix

package shardproc

import "math"

// nofileHard returns MaxInt: there is no limit of open files to fit here.
func nofileHard() int { return math.MaxInt }
