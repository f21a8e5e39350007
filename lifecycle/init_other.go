//go:build !linux

package lifecycle

// runAsInit does nothing: the init is for Linux containers, where a program can be PID 1.
func runAsInit() {}
