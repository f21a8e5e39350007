package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/podblocks/podblocks/internal/pdeathsig"
	"github.com/podblocks/podblocks/internal/procgroup"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Child is a process a Supervisor runs.
type Child struct {
	// Name is for status and the child label of podblocks_sidecar_supervisor_restarts_total
	// (children with one name count together); default: Path.
	Name string
	// Path is the executable, looked up in PATH when it has no slash, and relative to Dir when it is
	// relative; NewSupervisor checks it is there and executable.
	Path string
	Args []string // arguments after the program name
	Env  []string // environment; nil: the Supervisor's own (PATH is the Supervisor's either way)
	Dir  string   // working directory; empty: the Supervisor's own
	// Stdout and Stderr receive the child's output; nil discards it.
	Stdout, Stderr io.Writer
	// Group runs the child in a process group of its own (on Unix), as tini -g does: SIGTERM and
	// SIGKILL go to the whole group and to the child, so that the processes it started (a shell's
	// background jobs, a server's workers) stop with it, and what it leaves running in its group
	// when it exits on its own is killed before it is restarted (see Supervisor). The child must
	// not call setsid, nor be run as `setsid CMD` (setsid(1) forks when it leads a group: the
	// Supervisor sees it exit at once, and restarts it while the program runs on). Not for children
	// on a terminal (docker run -it): in a group of their own they are in the terminal's
	// background, stopped (SIGTTOU) when they set its attributes, and do not get Ctrl-C.
	Group bool
}

// name is the child's Name, or its Path.
func (c Child) name() string {
	if c.Name != "" {
		return c.Name
	}
	return c.Path
}

// findProgram checks that c's program is there and executable, where exec.Cmd looks for it: in
// PATH when Path is a bare name, otherwise relative to Dir.
func (c Child) findProgram() error {
	path := c.Path
	if filepath.Base(path) != path && !filepath.IsAbs(path) && c.Dir != "" {
		path = filepath.Join(c.Dir, path)
	}
	_, err := exec.LookPath(path)
	return err
}

// stableAfter is how long a child must run for its restart backoff to start over.
const stableAfter = 10 * time.Second

// Supervisor runs child processes and restarts any that exits, after a backoff (WithBackoff) that
// starts over once a child ran for 10s. It ends when the main container is done: when the done file
// (WithDoneFile) appears on the shared volume, on Done, on an HTTP POST to the Supervisor as a
// handler, or when ctx ends. It then sends SIGTERM to the children, SIGKILL after the grace period
// (WithGrace, default 10s), and Run returns nil once they all exited: a Job's sidecar finishes.
//
// # Output and process groups
//
// By default the signals go to the child's own process only, as a shell's or Docker's do: the
// processes it started (a shell's background jobs) are the child's business, and are neither
// signalled nor waited for. A child writing to a Stdout or Stderr that is not an *os.File (a
// bytes.Buffer, a zap writer) has its output copied until every process holding it closed it, but
// at most for the grace period after the child's own process exited: a background job that keeps
// it open cannot hold Run, or a restart, longer (Run returns within about twice the grace period
// of stopping then).
//
// With Child.Group, the child runs in a process group of its own (on Unix) and the signals go to
// the group as well: at the end, SIGTERM reaches all of it, the group gets the grace period (Run
// waits for the rest of it after the child's own process exited, without waiting out the grace
// once it is gone), and whatever of it still runs then is killed. A child that exits on its own is
// like a container's main process: what it left running in its group is killed (SIGKILL) before
// the child is restarted, so strays cannot pile up across restarts (nor keep holding the ports the
// restarted child needs). A process that left the group (setsid, a daemon) is neither signalled
// nor waited for, except the child itself, which is signalled wherever it went. The group is
// signalled only while the child's process has not been collected, so that its id cannot have
// been reused by an unrelated group: on Linux the Supervisor learns that the child exited without
// collecting it (waitid WNOWAIT); elsewhere on Unix it does not, and the group is not signalled
// once the child is seen to have exited (what it left runs on; a race of the child's exit with
// the SIGTERM at the end remains). Where there are no process groups (Windows),
// Group changes nothing.
//
// # When the Supervisor's process dies
//
// On Linux each child is started with a parent-death signal, SIGKILL: when the Supervisor's process
// ends without stopping its children (SIGKILL, a crash, the OOM killer), the kernel kills them,
// instead of leaving them to run on, unsupervised, beside the copies a restarted Supervisor starts
// (holding the ports and files those need). SIGKILL, not SIGTERM: the orderly stop (SIGTERM, the
// grace period, then SIGKILL) is Run's, and with the Supervisor gone no one is left to send the
// SIGKILL after the grace to a child that ignores SIGTERM or hangs in its handler. The signal
// reaches the child's own process only: the processes it started (the rest of its group, with
// Child.Group) are not signalled, and run on; in a container, the end of its PID 1 ends them all.
// The kernel drops the signal when the child runs a set-user-ID or set-group-ID program, and a
// child may drop it itself (prctl). It comes when the OS thread that started the child exits, so
// each child's goroutine keeps a thread to itself (runtime.LockOSThread) while the Supervisor
// runs. Elsewhere (no such signal) the children of a killed Supervisor run on.
type Supervisor struct {
	children []Child
	o        options
	log      *zap.Logger
	restarts *prometheus.CounterVec // by child
	done     chan struct{}
	doneOnce sync.Once

	mu    sync.Mutex
	state []childState
}

type childState struct {
	pid      int
	restarts int
	status   string
}

// WithDoneFile makes the Supervisor stop when path exists (checked every WithPollInterval).
func WithDoneFile(path string) Option {
	return optionFunc(func(o *options) { o.doneFile = path })
}

// WithGrace sets how long children get between SIGTERM and SIGKILL (default 10s).
func WithGrace(d time.Duration) Option {
	return optionFunc(func(o *options) { o.grace = d })
}

// NewSupervisor returns a Supervisor for children; a child whose program is not there or not
// executable (see Child.Path) is a *ConfigError. Options: WithDoneFile, WithGrace,
// WithPollInterval, WithBackoff, WithLogger, WithRegisterer.
func NewSupervisor(children []Child, opts ...Option) (*Supervisor, error) {
	if len(children) == 0 {
		return nil, &ConfigError{Field: "children", Reason: "none given"}
	}
	names := make([]string, len(children))
	for i, c := range children {
		if c.Path == "" {
			return nil, &ConfigError{Field: fmt.Sprintf("children[%d].Path", i), Reason: "empty"}
		}
		if err := c.findProgram(); err != nil {
			return nil, &ConfigError{Field: fmt.Sprintf("children[%d].Path", i), Reason: err.Error()}
		}
		names[i] = c.name()
	}
	o := buildOptions(opts)
	if o.grace <= 0 {
		o.grace = 10 * time.Second
	}
	if o.pollInterval <= 0 {
		return nil, &ConfigError{Field: "WithPollInterval", Reason: "must be positive"}
	}
	return &Supervisor{children: children, o: o, log: o.logger.Named("supervisor"),
		restarts: newRestartsCounter(o.registerer, names), done: make(chan struct{}),
		state: make([]childState, len(children))}, nil
}

// Done tells the Supervisor the main container is done. It is idempotent.
func (s *Supervisor) Done() { s.doneOnce.Do(func() { close(s.done) }) }

// ServeHTTP calls Done on POST (answering 202).
func (s *Supervisor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "POST to signal that the main container is done", http.StatusMethodNotAllowed)
		return
	}
	s.Done()
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, "stopping\n")
}

// Restarts returns how many times child i (the index of children given to NewSupervisor) was
// restarted; 0 when i names no child.
func (s *Supervisor) Restarts(i int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i < 0 || i >= len(s.state) {
		return 0
	}
	return s.state[i].restarts
}

// Statusz lists the children.
func (s *Supervisor) Statusz() (string, []string, [][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rows := make([][]string, len(s.children))
	for i, c := range s.children {
		st := s.state[i]
		rows[i] = []string{c.name(), strconv.Itoa(st.pid), strconv.Itoa(st.restarts), st.status}
	}
	return "sidecar supervisor", []string{"child", "pid", "restarts", "status"}, rows
}

// Run supervises until done (see Supervisor) and returns nil once every child exited.
func (s *Supervisor) Run(ctx context.Context) error {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range s.children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.supervise(i, stop)
		}()
	}
	var poll <-chan time.Time
	if s.o.doneFile != "" {
		t := time.NewTicker(s.o.pollInterval)
		defer t.Stop()
		poll = t.C
	}
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-s.done:
			s.log.Info("main container done")
			break wait
		case <-poll:
			if _, err := os.Stat(s.o.doneFile); err == nil {
				s.log.Info("done file found", zap.String("file", s.o.doneFile))
				break wait
			}
		}
	}
	close(stop)
	wg.Wait()
	return nil
}

// supervise runs child i until stop is closed, restarting it with backoff.
func (s *Supervisor) supervise(i int, stop <-chan struct{}) {
	if pdeathsig.Supported {
		// The parent-death signal comes when the thread that started the child exits, not the
		// process; and Go ends a thread when a goroutine locked to it returns without unlocking.
		// Unlocked, this goroutine could leave the thread that started the child, which another
		// goroutine could then lock and end, killing the child. Locked, the thread runs nothing
		// else, and outlives every child started here (os/exec's docs warn of this).
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	c := s.children[i]
	attempt := 0
	for {
		cmd := exec.Command(c.Path, c.Args...)
		cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = c.Env, c.Dir, c.Stdout, c.Stderr
		var attr *syscall.SysProcAttr
		if c.Group {
			attr = procgroup.Attr()
		}
		cmd.SysProcAttr = pdeathsig.Set(attr)
		// Output copied from a pipe (a writer that is not an *os.File) ends when every process
		// holding the pipe closed it: a background job of the child could hold Wait forever.
		cmd.WaitDelay = s.o.grace
		began := time.Now()
		err := cmd.Start()
		if err == nil {
			s.setState(i, cmd.Process.Pid, "running")
			r := watch(cmd, c.Group)
			select {
			case <-r.gone:
				if r.held && procgroup.Alive(cmd.Process) {
					s.log.Info("child exited, killing the processes it left in its group", zap.String("child", c.Path))
					s.killGroup(r)
				}
				err = r.wait()
			case <-stop:
				s.terminate(r)
				s.setState(i, 0, "stopped")
				return
			}
			if errors.Is(err, exec.ErrWaitDelay) {
				// The child exited 0; a process it started held its output open for the grace period.
				s.log.Info("child exited, its output still held open by a process it started after the grace period",
					zap.String("child", c.Path), zap.Duration("grace", s.o.grace))
				err = nil
			}
		}
		status := "exited"
		var ee *exec.ExitError
		switch {
		case err == nil:
			status = "exited 0"
		case errors.As(err, &ee):
			status = ee.ProcessState.String()
		default:
			status = "start: " + err.Error()
		}
		s.setState(i, 0, status)
		if time.Since(began) >= stableAfter {
			attempt = 0
		}
		attempt++
		s.log.Warn("child exited, restarting", zap.String("child", c.Path), zap.String("status", status), zap.Int("attempt", attempt))
		t := time.NewTimer(s.o.backoff(attempt))
		select {
		case <-stop:
			t.Stop()
			s.setState(i, 0, "stopped")
			return
		case <-t.C:
		}
		s.restarts.WithLabelValues(c.name()).Inc()
		s.mu.Lock()
		s.state[i].restarts++
		s.mu.Unlock()
	}
}

// running is a started child.
type running struct {
	cmd    *exec.Cmd
	group  bool          // Child.Group: signals go to the child's group too
	held   bool          // the child is not collected before wait: its group can be signalled after gone
	gone   chan struct{} // closed once the child's own process exited
	reap   chan struct{} // closed by wait, to let a held child be collected
	exited chan error    // cmd.Wait's result
}

// watch waits for cmd, started, in a goroutine of its own; wait must be called once gone is closed
// or the child is to be abandoned (after terminate). A group's child is held where the Supervisor can
// learn that it exited without collecting it (procgroup.WaitExited).
func watch(cmd *exec.Cmd, group bool) *running {
	r := &running{cmd: cmd, group: group, held: group && procgroup.CanWaitExited,
		gone: make(chan struct{}), reap: make(chan struct{}), exited: make(chan error, 1)}
	go func() {
		if r.held {
			// An error (none is expected for a child of ours) ends the wait early: the group is
			// then killed as if the child had exited, and still safely, as it is not collected.
			_ = procgroup.WaitExited(cmd.Process)
			close(r.gone)
			<-r.reap
		}
		err := cmd.Wait()
		if !r.held {
			close(r.gone)
		}
		r.exited <- err
	}()
	return r
}

// wait lets the child be collected and returns cmd.Wait's result.
func (r *running) wait() error {
	if r.held {
		close(r.reap)
	}
	return <-r.exited
}

// signal sends sig to the child and, with Child.Group, to its group while the child has not been
// collected; the child gets it once, from the group when it is still in it.
func (r *running) signal(sig syscall.Signal) {
	p := r.cmd.Process
	if r.group && r.groupSafe() {
		_ = procgroup.Signal(p, sig)
		if procgroup.InOwnGroup(p) {
			return
		}
	}
	_ = p.Signal(sig) // through a pidfd where there is one: safe after the child was collected
}

// groupSafe reports whether the child's group can be signalled: the child is held, or has not exited
// (where it is not held, it is collected as soon as it exits; a small window remains).
func (r *running) groupSafe() bool {
	if r.held {
		return true
	}
	select {
	case <-r.gone:
		return false
	default:
		return true
	}
}

// groupPoll is how often the Supervisor checks whether a child's group still runs; killWait bounds
// how long it waits for a group to go after SIGKILL, which takes effect as each process next runs
// (one in uninterruptible sleep, on a hung NFS mount, may not for long).
const (
	groupPoll = 20 * time.Millisecond
	killWait  = 5 * time.Second
)

// terminate sends SIGTERM to the child (and its group) and waits for the child's process, and then
// for the rest of a held group, for the grace period at most; then it kills what is left, and
// collects the child.
func (s *Supervisor) terminate(r *running) {
	r.signal(syscall.SIGTERM)
	t := time.NewTimer(s.o.grace)
	defer t.Stop()
	select {
	case <-r.gone:
		if r.held && !waitGroup(r.cmd.Process, t.C) {
			s.killGroup(r)
		}
	case <-t.C:
		r.signal(syscall.SIGKILL)
		<-r.gone
		if r.held {
			s.killGroup(r)
		}
	}
	_ = r.wait()
}

// killGroup kills the group of a held child and waits for it to go (killWait at most).
func (s *Supervisor) killGroup(r *running) {
	if procgroup.Kill(r.cmd.Process) != nil {
		return // none left
	}
	t := time.NewTimer(killWait)
	defer t.Stop()
	if !waitGroup(r.cmd.Process, t.C) {
		s.log.Warn("processes of a child's group still run after SIGKILL", zap.String("child", r.cmd.Path),
			zap.Int("group", r.cmd.Process.Pid), zap.Duration("waited", killWait))
	}
}

// waitGroup waits until the group of p has no process running; false when until fires first.
func waitGroup(p *os.Process, until <-chan time.Time) bool {
	poll := time.NewTicker(groupPoll)
	defer poll.Stop()
	for procgroup.Alive(p) {
		select {
		case <-poll.C:
		case <-until:
			return false
		}
	}
	return true
}

func (s *Supervisor) setState(i, pid int, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state[i].pid, s.state[i].status = pid, status
}
