//go:build !unix

package main

import "syscall"

// signalsOS is empty where there is no SIGUSR1 or SIGUSR2; signalling a process is refused there
// anyway (sidecar.SignalPID), and -webhook works.
var signalsOS = map[string]syscall.Signal{}
