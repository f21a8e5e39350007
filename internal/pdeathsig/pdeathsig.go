// Package pdeathsig has the kernel kill a child process when its parent dies: on Linux it sets the
// parent-death signal (prctl PR_SET_PDEATHSIG, through exec.Cmd's SysProcAttr) to SIGKILL, so a
// parent SIGKILLed, crashed or OOM-killed leaves no orphans; elsewhere it does nothing.
//
// The signal follows the OS thread that started the child, not the process: Go ends idle threads,
// and with them the children they started. Start the child from a goroutine locked to its thread
// (runtime.LockOSThread) that stays, still locked, until the child has been waited for; let that
// goroutine return without unlocking, so the runtime ends the thread rather than reusing it.
package pdeathsig
