//go:build !unix

package shardproc

import "errors"

const canSetNofile = false

func setNofile(uint64) error { return errors.ErrUnsupported }
