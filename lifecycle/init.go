package lifecycle

// InitEnv is the environment variable RunAsInit reads. Set it to "off" (or "0", "false", in any case) to run a
// program as PID 1 without the init, for example under `docker run --init` or Kubernetes'
// shareProcessNamespace, where something else already reaps. RunAsInit also sets it to "child" in the
// re-executed program's environment, and the program's RunAsInit removes it again, so the program
// sees the environment it was started with.
const InitEnv = "PODBLOCKS_INIT"

// initChild is InitEnv's value in the program the init re-executes.
const initChild = "child"

// RunAsInit makes a program that was started as PID 1 its own init, as tini or `docker run --init`
// would. Call it first thing in main:
//
//	func main() {
//		lifecycle.RunAsInit()
//		...
//	}
//
// When the process is not PID 1, is not on Linux, or InitEnv is "off", RunAsInit returns at once and
// does nothing else. Otherwise the process becomes a small init and RunAsInit never returns: it runs
// the same program again (from /proc/self/exe, the running executable whatever became of its path;
// the child's RunAsInit names it after its argv[0], cut to 15 bytes, so that ps shows the program's
// name; the same arguments, environment and standard input, output and error) as its only child, in a process group of its own that it puts in the terminal's
// foreground when standard input is the controlling terminal. The init forwards every signal it
// gets to that child (SIGTERM, SIGINT, SIGHUP, a real-time STOPSIGNAL such as SIGRTMIN+3, ...) but
// those tini keeps back too: fault signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL), SIGABRT, SIGTRAP,
// SIGSYS, SIGTTIN, SIGTTOU, and SIGURG, the Go runtime's own. It reaps every process the kernel
// reparents to it, and when the child ends, exits with the child's exit
// code, or 128+n when signal n killed it, as a shell reports it. In the child, RunAsInit returns and
// main goes on.
//
// The init is a separate process so that it does not take exit statuses away from the program: a
// reaper calling wait4(-1) in the program's own process would race os/exec's Cmd.Wait for its
// children and make it fail with ECHILD.
//
// The init has run the program's package initialization (init functions and package variables), as
// the child will again: keep them free of side effects such as listening on a port. If the program
// cannot be started again (no /proc mounted, say), RunAsInit writes one line to standard error and
// returns, and the program runs as PID 1 without an init.
func RunAsInit() { runAsInit() }
