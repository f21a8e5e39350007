package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/podblocks/podblocks/internal/procgroup"
	"go.uber.org/zap"
)

// Child is a process a Supervisor runs.
type Child struct {
	Name string   // for logs and status; default: Path
	Path string   // executable (looked up in PATH when it has no slash)
	Args []string // arguments after the program name
	Env  []string // environment; nil: the Supervisor's own
	Dir  string   // working directory; empty: the Supervisor's own
	// Stdout and Stderr receive the child's output; nil discards it.
	Stdout, Stderr io.Writer
}

// stableAfter is how long a child must run for its restart backoff to start over.
const stableAfter = 10 * time.Second

// Supervisor runs child processes and restarts any that exits, after a backoff (WithBackoff) that
// starts over once a child ran for 10s. It ends when the main container is done: when the done file
// (WithDoneFile) appears on the shared volume, on Done, on an HTTP POST to the Supervisor as a
// handler, or when ctx ends. It then sends SIGTERM to the children, SIGKILL after the grace period
// (WithGrace, default 10s), and Run returns nil once they all exited: a Job's sidecar finishes.
//
// # Process groups
//
// On Unix each child runs in a process group of its own, and the signals go to the whole group, so
// that the processes a child started (a shell's background jobs, a server's workers) stop with it:
// at the end, SIGTERM reaches all of them, the group gets the grace period, and whatever of it is
// still running then is killed; Run waits for that, not only for the child's own process. A child
// that exits on its own is like a container's main process: what it left running in its group is
// killed (SIGKILL) before the child is restarted, so strays cannot pile up across restarts (nor
// keep holding the ports the restarted child needs). A process that left its child's group
// (setsid, a daemon) is the child's business: it is neither signalled nor waited for. A child
// writing to a Stdout or Stderr that is not an *os.File (a bytes.Buffer, a zap writer) has its
// output copied until every process holding it closed it, but at most for the grace period after
// the child's own process exited: a process outside the group that keeps it open cannot hold Run
// (or a restart) longer. Being in a group of their own, children do not get the signals a terminal
// sends to the Supervisor's group (Ctrl-C): the Supervisor passes SIGTERM on when it stops. Where
// there are no process groups (Windows), only the child's own process is signalled.
type Supervisor struct {
	children []Child
	o        options
	log      *zap.Logger
	m        *actionMetrics
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

// NewSupervisor returns a Supervisor for children. Options: WithDoneFile, WithGrace,
// WithPollInterval, WithBackoff, WithLogger, WithRegisterer.
func NewSupervisor(children []Child, opts ...Option) (*Supervisor, error) {
	if len(children) == 0 {
		return nil, &ConfigError{Field: "children", Reason: "none given"}
	}
	for i, c := range children {
		if c.Path == "" {
			return nil, &ConfigError{Field: fmt.Sprintf("children[%d].Path", i), Reason: "empty"}
		}
	}
	o := buildOptions(opts)
	if o.grace <= 0 {
		o.grace = 10 * time.Second
	}
	if o.pollInterval <= 0 {
		return nil, &ConfigError{Field: "WithPollInterval", Reason: "must be positive"}
	}
	return &Supervisor{children: children, o: o, log: o.logger.Named("supervisor"),
		m: newActionMetrics(o.registerer, "supervisor_restarts"), done: make(chan struct{}),
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

// Restarts returns how many times child i was restarted.
func (s *Supervisor) Restarts(i int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state[i].restarts
}

// Statusz lists the children.
func (s *Supervisor) Statusz() (string, []string, [][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rows := make([][]string, len(s.children))
	for i, c := range s.children {
		name := c.Name
		if name == "" {
			name = c.Path
		}
		st := s.state[i]
		rows[i] = []string{name, strconv.Itoa(st.pid), strconv.Itoa(st.restarts), st.status}
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
	c := s.children[i]
	attempt := 0
	for {
		cmd := exec.Command(c.Path, c.Args...)
		cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = c.Env, c.Dir, c.Stdout, c.Stderr
		cmd.SysProcAttr = procgroup.Attr()
		// Output copied from a pipe (a writer that is not an *os.File) ends when every process
		// holding the pipe closed it: one the child left outside its group could hold Wait forever.
		cmd.WaitDelay = s.o.grace
		began := time.Now()
		err := cmd.Start()
		if err == nil {
			s.setState(i, cmd.Process.Pid, "running")
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err = <-exited:
				if procgroup.Alive(cmd.Process) {
					s.log.Info("child exited, killing the processes it left in its group", zap.String("child", c.Path))
					s.killGroup(cmd)
				}
			case <-stop:
				s.terminate(cmd, exited)
				s.setState(i, 0, "stopped")
				return
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
		s.m.runs.WithLabelValues("restart").Inc()
		s.mu.Lock()
		s.state[i].restarts++
		s.mu.Unlock()
	}
}

// groupPoll is how often the Supervisor checks whether a child's group still runs; killWait bounds
// how long it waits for a group to go after SIGKILL, which takes effect as each process next runs
// (one in uninterruptible sleep, on a hung NFS mount, may not for long).
const (
	groupPoll = 20 * time.Millisecond
	killWait  = 5 * time.Second
)

// terminate sends SIGTERM to the child's group and waits for the child's process and then for the
// rest of its group, for the grace period at most; then it kills what is left of the group.
func (s *Supervisor) terminate(cmd *exec.Cmd, exited <-chan error) {
	_ = procgroup.Signal(cmd.Process, syscall.SIGTERM)
	t := time.NewTimer(s.o.grace)
	defer t.Stop()
	select {
	case <-exited:
		if waitGroup(cmd.Process, t.C) {
			return
		}
		s.killGroup(cmd)
	case <-t.C:
		s.killGroup(cmd)
		<-exited
	}
}

// killGroup kills the child's group and waits for it to go (killWait at most).
func (s *Supervisor) killGroup(cmd *exec.Cmd) {
	if procgroup.Kill(cmd.Process) != nil {
		return // none left
	}
	t := time.NewTimer(killWait)
	defer t.Stop()
	if !waitGroup(cmd.Process, t.C) {
		s.log.Warn("processes of a child's group still run after SIGKILL", zap.String("child", cmd.Path),
			zap.Int("group", cmd.Process.Pid), zap.Duration("waited", killWait))
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
