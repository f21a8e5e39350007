//go:build unix

package main

import "syscall"

var signalsOS = map[string]syscall.Signal{"USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2}
