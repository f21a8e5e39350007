// Package lifecycle is the single-container management interface of "Design patterns for
// container-based distributed systems": what a container exposes looking up (health, metrics,
// configuration, log level, profiles, status) and what it takes looking down (lifecycle hooks,
// graceful deletion, priority, "replicate yourself"). It also defines Component, the shape every
// podblocks building block has.
//
// # Components and groups
//
// A Component is anything with Run(ctx) error that blocks until ctx ends. Group starts components in
// order, waiting for each Readier to become ready, and stops them in reverse order, calling Restore
// before start and Checkpoint before stop on components that have them.
//
// # Hook server
//
// Server serves /livez, /readyz, /healthz and /startupz with kube-apiserver's conventions (?verbose,
// ?exclude=name, /readyz/<name>), /metrics, /configz (secrets redacted), /logz (zap level, GET/PUT),
// /statusz (HTML or ?format=json), opt-in /debug/pprof/, and the hooks POST /prestop and POST
// /quitquitquit. It listens on 127.0.0.1:8081 unless told otherwise, with read, write and idle
// timeouts and a header size limit.
//
// # Graceful deletion
//
// App ties a Group and a Server together and drains on SIGTERM or /prestop: not ready, keep serving
// for the propagation delay, shut the HTTP servers down within the grace period, cancel stragglers,
// stop the group in reverse order, exit 0. A second signal stops at once. After a drain the signals
// stay caught when Run returns, so a SIGTERM on the way out does not turn exit 0 into 143.
//
// # Running as PID 1
//
// A program that is a container's first process is PID 1 of its PID namespace, and PID 1 is the
// namespace's init: the kernel hands it every orphaned process to reap, and a signal's default
// action does not apply to it. RunAsInit, called first thing in main, makes such a program its own init,
// as tini does: the process re-executes itself as its only child, forwards every signal to it but
// the ones tini keeps back (faults, SIGABRT, SIGTTIN/SIGTTOU, the runtime's SIGURG),
// reaps every zombie, and exits with the child's status (128+n for signal n). The program keeps its
// children's exit statuses for os/exec, which a reaper inside the program's own process would take.
// Anywhere else (not PID 1, not Linux, or PODBLOCKS_INIT=off) RunAsInit returns at once.
//
// # Lifecycle and cleanup
//
// Constructors validate and start nothing. Run returns only after every goroutine it started has
// exited; it returns nil when its ctx ended it. One exception: a health check's Func that ignores its
// context cannot be stopped, so Server.Run waits for it only up to half the safety margin and then
// leaves it running (one call per check at most) with a warning in the log.
//
// # Concurrency
//
// Configure a Server, Group or App (Add, AddCheck, AddConfig, Handle) before Run; after that their
// methods are safe for concurrent use. Shedder is safe for concurrent use. KubeScaler was tested
// against an httptest server that enforces the Kubernetes API's shape and conflicts, not against a
// real API server.
package lifecycle
