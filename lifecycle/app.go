package lifecycle

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"sync"
	"time"

	"go.uber.org/zap"
)

// App runs a Group behind a hook Server and carries out graceful deletion the way Kubernetes expects
// it. On SIGTERM (or POST /prestop, POST /quitquitquit, or Drain) it:
//
//  1. marks the pod not ready (/readyz fails with "draining");
//  2. keeps serving for the propagation delay, so that the endpoint removal reaches every load
//     balancer and kube-proxy before new connections stop being accepted;
//  3. shuts down the HTTP servers added to it (HTTPServer) within what is left of the grace period
//     minus the safety margin, letting in-flight requests finish;
//  4. cancels the base context of requests still running at that deadline, and gives their handlers
//     up to CancelAnswerTime (at most half the safety margin) to answer before closing their
//     connections;
//  5. stops the group in reverse order (calling Checkpoint on components that have one);
//  6. returns nil from Run, so the process exits 0.
//
// A second signal skips what is left of the sequence and stops at once. When ctx ends or a component
// returns during the sequence, the App skips what is left of the propagation delay and stops waiting
// for idle connections, but lets the requests still running finish (until the drain's deadline, as
// in step 4) before the group stops. The hook server is the group's first component, so it keeps
// answering probes until everything else has stopped.
//
// When a component returns on its own (it failed, or it finished its work), the group stops the
// others at once, without the sequence; the App marks the pod not ready (/readyz fails with
// "draining") as soon as the component returned, while the others stop, and a preStop hook
// arriving then answers 200 "stopping" at once rather than wait for the hook server to stop.
//
// After a drain, Run returns with the signals still caught (and dropped): the process is on its way
// out, and Kubernetes sends SIGTERM only once the preStop hook has returned, so that signal may
// arrive after Run returned; caught, it cannot turn the exit status 0 into 143. A process that goes
// on after Run restores the default action with signal.Reset.
type App struct {
	opts  options
	log   *zap.Logger
	hooks *Server
	group Group

	mu      sync.Mutex
	servers []*HTTPServer

	drainStarted bool          // under mu: Drain sent on drainReq
	drainReq     chan bool     // true: skip the propagation delay; buffered 1, sent once
	drained      chan struct{} // closed when the HTTP servers are shut down
	stopNow      chan struct{} // closed on the second signal
	stopping     chan struct{} // closed (under mu) when the group starts stopping its components
	stopOnce     sync.Once
}

// NewApp returns an App with a hook server built from opts (see NewServer) and the drain options
// WithPropagationDelay, WithGracePeriod, WithSafetyMargin and WithSignals.
func NewApp(opts ...Option) (*App, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.propagation < 0 || o.grace <= 0 || o.margin < 0 {
		return nil, errors.New("lifecycle: propagation delay and safety margin must be >= 0, grace period > 0")
	}
	if o.propagation+o.margin >= o.grace {
		return nil, errors.New("lifecycle: propagation delay plus safety margin must be less than the grace period")
	}
	hooks, err := NewServer(opts...)
	if err != nil {
		return nil, err
	}
	a := &App{
		opts:     o,
		log:      o.logger.Named("lifecycle"),
		hooks:    hooks,
		drainReq: make(chan bool, 1),
		drained:  make(chan struct{}),
		stopNow:  make(chan struct{}),
		stopping: make(chan struct{}),
	}
	a.group.Logger = a.log
	// A component returned (or ctx ended): the others are being stopped, so the pod is no longer
	// ready, as in a drain. The group calls it once. A drain under way first lets its running
	// requests finish (sequence ends its Shutdown as soon as none is running): stopping the HTTP
	// servers now would cut them off, or fail their stop timeout while the Shutdown holds them.
	a.group.beforeStop = func() {
		a.hooks.setStateFrom(StateDraining, StateStarting, StateReady)
		a.mu.Lock()
		close(a.stopping)
		draining := a.drainStarted
		a.mu.Unlock()
		if draining {
			select {
			case <-a.drained:
			case <-a.stopNow:
			}
		}
	}
	a.group.StopTimeout = o.margin
	if err := a.group.Add("hooks", hooks); err != nil {
		return nil, err
	}
	hooks.AddStatus(&a.group)
	// POST /prestop drains and answers 200 "drained" once the HTTP servers are shut down. When the
	// group is stopping already (a component returned, ctx ended, or the drain is over), it answers
	// 200 "stopping" at once: the container is on its way out, and Kubernetes only logs a failed
	// preStop hook, so waiting for the hook server to stop would only hold the kubelet up.
	hooks.HandlePreStop(func(ctx context.Context) error {
		a.Drain()
		select {
		case <-a.drained:
			return nil
		case <-a.stopping:
			if isClosed(a.drained) {
				return nil // the drain finished as well: say so
			}
			return errStopping
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	hooks.HandleQuit(func() { a.drain(true) })
	return a, nil
}

// Hooks returns the App's hook server, to add checks, configs and status sections to.
func (a *App) Hooks() *Server { return a.hooks }

// Group returns the App's group (read-only use: States, Ready).
func (a *App) Group() *Group { return &a.group }

// Add adds c to the App's group (see Group.Add). An *HTTPServer is also shut down gracefully by the
// drain.
func (a *App) Add(name string, c Component, opts ...AddOption) error {
	if err := a.group.Add(name, c, opts...); err != nil {
		return err
	}
	if h, ok := c.(*HTTPServer); ok {
		// The answer window comes out of the margin; half of it at most, so that the drain ends
		// within the grace period.
		h.answerTime.Store(int64(min(CancelAnswerTime, a.opts.margin/2)))
		a.mu.Lock()
		a.servers = append(a.servers, h)
		a.mu.Unlock()
	}
	if sp, ok := c.(StatusProvider); ok {
		a.hooks.AddStatus(sp)
	}
	return nil
}

// Drain starts the drain sequence; it returns at once. Calls after the first do nothing, and so do
// calls once the group is stopping without a drain (a component returned, or ctx ended): that stop
// is not a drain, and is not counted or logged as one.
func (a *App) Drain() { a.drain(false) }

func (a *App) drain(skipPropagation bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.drainStarted || isClosed(a.stopping) {
		return
	}
	a.drainStarted = true
	a.drainReq <- skipPropagation
}

// Ready is closed once every component of the group is ready.
func (a *App) Ready() <-chan struct{} { return a.group.Ready() }

// Run runs the group and the drain sequence until the group has stopped. It returns nil after a
// drain, when ctx ends (which stops at once, without a drain; during a drain, once the requests
// still running have finished: see App) or when a component finished (returned nil); otherwise the
// group's error. After a drain it leaves the signals caught (see App).
func (a *App) Run(ctx context.Context) error {
	sigs := make(chan os.Signal, 2) // nobody reads it after a drained Run returned: later signals are dropped
	drained := false
	if len(a.opts.signals) > 0 {
		signal.Notify(sigs, a.opts.signals...)
		defer func() {
			if !drained {
				signal.Stop(sigs)
			}
		}()
	}
	gctx, stopGroup := context.WithCancel(ctx)
	defer stopGroup()
	groupDone := make(chan error, 1)
	go func() { groupDone <- a.group.Run(gctx) }()

	var (
		wg         sync.WaitGroup
		signals    int
		sequenced  = make(chan struct{}) // closed when the drain sequence finished
		groupReady = a.group.Ready()
	)
	defer wg.Wait()
	for {
		select {
		case <-groupReady:
			groupReady = nil
			if a.hooks.setStateFrom(StateReady, StateStarting) {
				a.log.Info("ready")
			}
		case sig := <-sigs:
			signals++
			a.log.Info("signal received", zap.Stringer("signal", sig), zap.Int("count", signals))
			if signals > 1 {
				a.stopOnce.Do(func() { close(a.stopNow) })
				stopGroup()
				continue
			}
			a.Drain()
		case skip := <-a.drainReq:
			drained = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				a.sequence(skip)
				close(sequenced)
			}()
		case <-sequenced:
			sequenced = nil
			stopGroup()
		case err := <-groupDone:
			a.hooks.SetState(StateStopped)
			a.stopOnce.Do(func() { close(a.stopNow) }) // release a drain still waiting
			if err != nil {
				// The error is Run's to return; logging it too would report it twice.
				a.log.Debug("stopped with an error", zap.Error(err))
			} else {
				a.log.Info("stopped")
			}
			return err
		}
	}
}

// sequence marks the pod not ready, waits out the propagation delay and shuts the HTTP servers down
// within the grace period's budget.
func (a *App) sequence(skipPropagation bool) {
	start := time.Now()
	deadline := start.Add(a.opts.grace - a.opts.margin)
	// Not over StateStopped: this goroutine may run only after the group ended and Run said so.
	a.hooks.setStateFrom(StateDraining, StateStarting, StateReady)
	a.hooks.metrics.drains.Inc()
	a.log.Info("draining", zap.Duration("propagation", a.opts.propagation), zap.Time("deadline", deadline))
	defer close(a.drained)

	if !skipPropagation && a.opts.propagation > 0 {
		t := time.NewTimer(a.opts.propagation)
		select {
		case <-t.C:
		case <-a.stopNow:
		case <-a.stopping:
		}
		t.Stop()
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	a.mu.Lock()
	servers := append([]*HTTPServer(nil), a.servers...)
	a.mu.Unlock()
	// A second signal cuts the shutdown short at once. The group stopping (ctx ended, a component
	// returned) cuts it short once no request is running: the shutdown stops waiting for idle
	// connections (and for those that have not sent a request yet, which http.Server.Shutdown
	// waits for), but in-flight requests still get their answer.
	go func() {
		select {
		case <-a.stopNow:
			cancel()
		case <-ctx.Done():
		}
	}()
	go func() {
		select {
		case <-a.stopping:
			for _, s := range servers {
				s.waitAnswers(ctx)
			}
			cancel()
		case <-ctx.Done():
		}
	}()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Shutdown(ctx)
			switch {
			case errors.Is(err, context.DeadlineExceeded):
				a.log.Warn("in-flight requests cut off at the drain deadline", zap.String("addr", s.Addr()), zap.Error(err))
			case err != nil:
				a.log.Info("drain cut short: the app is stopping", zap.String("addr", s.Addr()))
			}
		}()
	}
	wg.Wait()
	a.hooks.metrics.drainDuration.Observe(time.Since(start).Seconds())
	a.log.Info("servers drained", zap.Duration("took", time.Since(start)))
}
