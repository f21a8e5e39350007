//go:build !unix

package shardproc

import "syscall"

// dropRootAttr returns nil: there is no root to drop here.
func dropRootAttr() *syscall.SysProcAttr { return nil }
