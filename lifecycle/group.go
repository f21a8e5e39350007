package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Default timeouts of a Group whose fields are zero.
const (
	DefaultStartTimeout = time.Minute
	DefaultStopTimeout  = 30 * time.Second
)

// State is where a component, a Group or a Server is in its life.
type State int32

// The states, in the order they are passed through.
const (
	StateNew State = iota
	StateStarting
	StateReady
	StateDraining
	StateStopped
)

var stateNames = [...]string{"new", "starting", "ready", "draining", "stopped"}

func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("State(%d)", int32(s))
	}
	return stateNames[s]
}

// Group runs components as one: it starts them in the order they were added, waiting for each
// component that is a Readier to become ready before it starts the next; it stops them in reverse
// order, each within its stop timeout. The first component to return stops the rest: one that
// fails makes Run fail, one that returns nil (it finished: a reader at EOF, a Job's sidecar whose
// main container is done) ends the group cleanly. A start failure rolls back what had started. Run
// returns only when every component has returned.
//
// The zero value is ready to use. Add every component before Run; a Group runs once.
type Group struct {
	// StartTimeout bounds how long a Readier may take to become ready. Zero means DefaultStartTimeout.
	StartTimeout time.Duration
	// StopTimeout is the default time a component gets to return after its context is cancelled,
	// before the group moves on to stop the next one (it still waits for it before Run returns).
	// Zero means DefaultStopTimeout.
	StopTimeout time.Duration
	// Logger receives start and stop events. Nil means no logging.
	Logger *zap.Logger

	mu      sync.Mutex
	members []*member
	ran     bool
	ready   chan struct{}

	// beforeStop, if set, is called when Run starts stopping the components (ctx ended or a
	// component returned), before it stops the first one. An App marks the pod not ready in it.
	beforeStop func()
}

type member struct {
	name        string
	c           Component
	stopTimeout time.Duration
	state       atomic.Int32
	since       atomic.Int64 // unix nanoseconds of the last state change
	done        chan struct{}
	err         error // written before done is closed
	cancel      context.CancelFunc
}

func (m *member) setState(s State) {
	m.state.Store(int32(s))
	m.since.Store(time.Now().UnixNano())
}

// AddOption configures one component of a Group.
type AddOption interface{ applyAdd(*member) }

type stopTimeoutOption time.Duration

func (o stopTimeoutOption) applyAdd(m *member) { m.stopTimeout = time.Duration(o) }

// WithStopTimeout overrides the Group's StopTimeout for one component.
func WithStopTimeout(d time.Duration) AddOption { return stopTimeoutOption(d) }

// Add appends c to the group under name. It returns an error if the name is empty or taken, c is nil,
// or the group has already run.
func (g *Group) Add(name string, c Component, opts ...AddOption) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.ran:
		return fmt.Errorf("lifecycle: add %q: group already ran", name)
	case name == "":
		return errors.New("lifecycle: add: empty component name")
	case c == nil:
		return fmt.Errorf("lifecycle: add %q: nil component", name)
	}
	for _, m := range g.members {
		if m.name == name {
			return fmt.Errorf("lifecycle: add %q: name already used", name)
		}
	}
	m := &member{name: name, c: c}
	for _, o := range opts {
		o.applyAdd(m)
	}
	g.members = append(g.members, m)
	return nil
}

// Ready returns a channel that is closed once every component has started and is ready. It is never
// closed if the group fails to start.
func (g *Group) Ready() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ready == nil {
		g.ready = make(chan struct{})
	}
	return g.ready
}

// States reports each component's name and state, in the order they were added.
func (g *Group) States() []ComponentState {
	g.mu.Lock()
	members := g.members
	g.mu.Unlock()
	out := make([]ComponentState, len(members))
	for i, m := range members {
		out[i] = ComponentState{Name: m.name, State: State(m.state.Load()), Since: time.Unix(0, m.since.Load())}
	}
	return out
}

// ComponentState is one row of Group.States.
type ComponentState struct {
	Name  string
	State State
	Since time.Time // zero before the component was started
}

// Statusz lists the components and their states for the hook server's /statusz page.
func (g *Group) Statusz() (string, []string, [][]string) {
	var rows [][]string
	for _, s := range g.States() {
		since := ""
		if !s.Since.IsZero() && s.Since.Unix() > 0 {
			since = s.Since.UTC().Format(time.RFC3339)
		}
		rows = append(rows, []string{s.Name, s.State.String(), since})
	}
	return "components", []string{"component", "state", "since"}, rows
}

// Run starts the components and blocks until ctx is done or a component returns; then it stops them in
// reverse order. It returns nil when every component returned nil (the first to return, before ctx
// ended, having finished its work, or each when it was stopped); otherwise the errors, each a
// *ComponentError, joined. A component that returns nil while it is still starting (before a
// Readier is ready) fails with ErrExitedEarly.
//
// Each component runs with a context that carries ctx's values but is cancelled only by the group,
// so that the group controls the order of stopping.
func (g *Group) Run(ctx context.Context) error {
	g.mu.Lock()
	if g.ran {
		g.mu.Unlock()
		return errors.New("lifecycle: group already ran")
	}
	g.ran = true
	if g.ready == nil {
		g.ready = make(chan struct{})
	}
	members, ready := g.members, g.ready
	g.mu.Unlock()

	log := g.Logger
	if log == nil {
		log = zap.NewNop()
	}
	startTimeout := orDefault(g.StartTimeout, DefaultStartTimeout)
	for _, m := range members {
		m.setState(StateNew)
	}

	var (
		errs        []error
		anyExit     = make(chan struct{})
		exitOnce    sync.Once
		firstExit   atomic.Pointer[member]
		started     int
		startFailed *member // a component whose early exit is already in errs
	)
	base := context.WithoutCancel(ctx)
start:
	for _, m := range members {
		if r, ok := m.c.(Restorer); ok {
			if err := r.Restore(ctx); err != nil {
				errs = append(errs, &ComponentError{Name: m.name, Phase: "restore", Err: err})
				break
			}
		}
		mctx, cancel := context.WithCancel(base)
		m.cancel, m.done = cancel, make(chan struct{})
		m.setState(StateStarting)
		log.Debug("starting component", zap.String("component", m.name))
		go func() {
			err := m.c.Run(mctx)
			m.err = err
			close(m.done)
			firstExit.CompareAndSwap(nil, m)
			exitOnce.Do(func() { close(anyExit) })
		}()
		started++
		if r, ok := m.c.(Readier); ok {
			t := time.NewTimer(startTimeout)
			select {
			case <-r.Ready():
			case <-m.done:
				if m.err == nil && isClosed(r.Ready()) {
					break // ready, then finished at once (a reader of a short input): it started
				}
				err := m.err
				if err == nil {
					err = ErrExitedEarly
				}
				errs = append(errs, &ComponentError{Name: m.name, Phase: "start", Err: err})
				startFailed = m
			case <-t.C:
				errs = append(errs, &ComponentError{Name: m.name, Phase: "start", Err: ErrStartTimeout})
			case <-anyExit: // an earlier component returned while this one was starting
			case <-ctx.Done():
			}
			t.Stop()
			if len(errs) > 0 || ctx.Err() != nil || firstExit.Load() != nil {
				break start
			}
		}
		m.setState(StateReady)
		log.Debug("component ready", zap.String("component", m.name))
	}

	if len(errs) == 0 && ctx.Err() == nil && firstExit.Load() == nil {
		close(ready)
		select {
		case <-ctx.Done():
		case <-anyExit:
		}
	}
	if g.beforeStop != nil {
		g.beforeStop()
	}
	if m := firstExit.Load(); m != nil && m != startFailed {
		if m.err != nil {
			errs = append(errs, &ComponentError{Name: m.name, Phase: "run", Err: m.err})
		}
		log.Info("component returned; stopping the group", zap.String("component", m.name), zap.Error(m.err))
	}

	for i := started - 1; i >= 0; i-- {
		m := members[i]
		stopTimeout := orDefault(m.stopTimeout, orDefault(g.StopTimeout, DefaultStopTimeout))
		select {
		case <-m.done:
		default:
			m.setState(StateDraining)
			if cp, ok := m.c.(Checkpointer); ok {
				cctx, cancel := context.WithTimeout(base, stopTimeout)
				if err := cp.Checkpoint(cctx); err != nil {
					errs = append(errs, &ComponentError{Name: m.name, Phase: "checkpoint", Err: err})
				}
				cancel()
			}
		}
		m.cancel()
		t := time.NewTimer(stopTimeout)
		select {
		case <-m.done:
		case <-t.C:
			errs = append(errs, &ComponentError{Name: m.name, Phase: "stop", Err: ErrStopTimeout})
			log.Warn("component did not stop in time; stopping the next", zap.String("component", m.name), zap.Duration("timeout", stopTimeout))
		}
		t.Stop()
	}
	first := firstExit.Load()
	for _, m := range members[:started] {
		<-m.done
		m.setState(StateStopped)
		if m.err != nil && m != first && m != startFailed {
			errs = append(errs, &ComponentError{Name: m.name, Phase: "stop", Err: m.err})
		}
	}
	return errors.Join(errs...)
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// isClosed reports whether ch is closed (or holds a value), without waiting.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// waitCond waits, with c.L held, until done reports true or ctx ends, and returns what done reports
// then. Whoever changes what done reads broadcasts on c.
func waitCond(ctx context.Context, c *sync.Cond, done func() bool) bool {
	ended := false
	stop := context.AfterFunc(ctx, func() {
		c.L.Lock()
		ended = true
		c.Broadcast()
		c.L.Unlock()
	})
	defer stop()
	for !done() && !ended {
		c.Wait()
	}
	return done()
}
