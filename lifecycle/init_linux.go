package lifecycle

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"unsafe"
)

// initKept are the signals the init does not pass on, as tini keeps them back: the ones the kernel
// raises for a fault (SIGSEGV, SIGBUS, ...) and SIGABRT, SIGTRAP and SIGSYS, which a program sends
// itself when it crashes, SIGTTIN and SIGTTOU, which a terminal sends a background group, and SIGURG,
// which the Go runtime sends its own threads to preempt goroutines. SIGCHLD makes the init reap.
// Every other signal, real-time ones included, goes to the program.
var initKept = map[os.Signal]bool{
	syscall.SIGFPE: true, syscall.SIGILL: true, syscall.SIGSEGV: true, syscall.SIGBUS: true,
	syscall.SIGABRT: true, syscall.SIGTRAP: true, syscall.SIGSYS: true, syscall.SIGTTIN: true,
	syscall.SIGTTOU: true, syscall.SIGURG: true, syscall.SIGCHLD: true,
}

func runAsInit() {
	switch v := os.Getenv(InitEnv); {
	case v == initChild:
		os.Unsetenv(InitEnv)
		if os.Getpid() != 1 {
			setComm(os.Args[0])
			return
		}
		// PID 1 with the child's marker: set by mistake, not by an init. Be the init.
	case strings.EqualFold(v, "off") || v == "0" || strings.EqualFold(v, "false"):
		return
	}
	if os.Getpid() != 1 {
		return
	}
	code, err := superviseAsInit()
	if err != nil {
		fmt.Fprintf(os.Stderr, "podblocks init: %v; running without an init\n", err)
		return
	}
	os.Exit(code)
}

// superviseAsInit starts the program again as the only child, forwards signals to it and reaps
// every child until the program has ended, and returns the exit code to end with.
func superviseAsInit() (int, error) {
	// Catch the signals before the child exists, so none is lost between its start and the loop.
	// Each SIGCHLD makes the loop reap every child that has ended, so a SIGCHLD dropped because the
	// buffer was full loses nothing; the buffer holds a burst of signals to forward.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs) // all of them: a signal the init does not catch would be lost (PID 1 has no default actions)
	pid, err := startInitChild()
	if err != nil {
		signal.Stop(sigs)
		return 0, err
	}
	for {
		if status, ended := reapChildren(pid); ended {
			return exitCode(status), nil
		}
		// The child cannot have been reaped yet (reapChildren just said so), so pid still names it:
		// a signal never goes to a process that reused the number.
		if s := <-sigs; !initKept[s] {
			_ = syscall.Kill(pid, s.(syscall.Signal)) // ESRCH: it is ending; the next SIGCHLD tells
		}
	}
}

// startInitChild runs the program's executable (selfExe) with the init's arguments and environment (plus InitEnv=child)
// and standard descriptors, in a new process group; the group goes to the terminal's foreground
// when standard input is the init's controlling terminal, so a ^C reaches the program once, from
// the terminal, rather than twice.
func startInitChild() (int, error) {
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, InitEnv+"=") {
			env = append(env, kv)
		}
	}
	env = append(env, InitEnv+"="+initChild)
	attr := &syscall.ProcAttr{Env: env, Files: []uintptr{0, 1, 2}}
	exe := selfExe
	if controllingTerminal(0) {
		attr.Sys = &syscall.SysProcAttr{Foreground: true, Ctty: 0}
		if pid, err := syscall.ForkExec(exe, os.Args, attr); err == nil {
			return pid, nil
		}
	}
	attr.Sys = &syscall.SysProcAttr{Setpgid: true}
	pid, err := syscall.ForkExec(exe, os.Args, attr)
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", exe, err)
	}
	return pid, nil
}

// selfExe names the running executable whatever happened to its path since it started (an upgrade
// replaced it, a symlink now points elsewhere): the init starts the program again from it, with no
// window between finding the file and running it.
const selfExe = "/proc/self/exe"

// setComm names the process (comm: what ps and top show) after argv0's last element, as exec would
// have, cut to the kernel's 15 bytes: the program started from selfExe would otherwise be "exe".
// Writing /proc/self/comm names the process whichever thread writes it (prctl(PR_SET_NAME) would
// name only the calling thread). It does nothing if that fails.
func setComm(argv0 string) {
	name := filepath.Base(argv0)
	if name == "." || name == "/" {
		return
	}
	if len(name) > 15 { // TASK_COMM_LEN - 1
		name = name[:15]
	}
	_ = os.WriteFile("/proc/self/comm", []byte(name), 0)
}

// controllingTerminal reports whether fd is the process' controlling terminal: TIOCGPGRP fails on
// anything else.
func controllingTerminal(fd int) bool {
	var pgrp int32
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TIOCGPGRP, uintptr(unsafe.Pointer(&pgrp)))
	return e == 0
}

// reapChildren waits for every child that has ended, without blocking, and reports whether main
// was among them and how it ended.
func reapChildren(main int) (status syscall.WaitStatus, ended bool) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 { // ECHILD: no children left; 0: none has ended
			return status, ended
		}
		if pid == main {
			status, ended = ws, true
		}
	}
}

// exitCode is the exit code a shell reports for a process that ended with ws.
func exitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
