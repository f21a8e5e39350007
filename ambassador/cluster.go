package ambassador

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Backend is a Cluster's live state for one endpoint: requests in flight, circuit breaker, health
// and outlier status, and (for HTTP) its idle upstream connections. Backends are created and
// retired by their Cluster; callers get them from Acquire.
type Backend struct {
	Endpoint
	c        *Cluster
	active   atomic.Int64
	pending  atomic.Int64
	sem      chan struct{} // circuit breaker slots; nil means unlimited
	failures atomic.Int32  // consecutive failures (outlier detection)
	retired  atomic.Bool
	out      atomic.Bool // unavailable (unhealthy or ejected): set by collect, and by eject at once
	idle     idlePool
	m        endpointMetrics

	// guarded by c.mu
	healthy      bool // active health check verdict (true until checks say otherwise)
	hcOK, hcFail int  // consecutive check results
	ejected      bool
	ejectedUntil time.Time
	ejections    int
	stopCheck    context.CancelFunc
}

// Active returns the number of requests or connections in flight to b.
func (b *Backend) Active() int64 { return b.active.Load() }

// Pending returns the number of requests waiting for a circuit-breaker slot on b.
func (b *Backend) Pending() int64 { return b.pending.Load() }

// snapshot is an immutable view the hot path reads with one atomic load.
type snapshot struct {
	all   []*Backend // sorted by address
	pick  []*Backend // the balancer's index space
	bal   Balancer
	panic bool
	avail int // the endpoints available when collected, for the panic mode log
}

// avoid reports whether Acquire should send a request elsewhere than to b, an endpoint of s.pick,
// when another can take it: b is in tried, or (unless s is in panic mode, where every endpoint
// takes traffic) b has become unavailable since s was built.
func (s *snapshot) avoid(b *Backend, tried []*Backend) bool {
	return slices.Contains(tried, b) || !s.panic && b.out.Load()
}

// triedSet is the endpoints a request or connection has failed on, for Acquire to avoid: each
// once (a retry back to one already tried adds nothing), the first 4.
type triedSet struct {
	buf [4]*Backend
	n   int
}

func (t *triedSet) list() []*Backend { return t.buf[:t.n] }

// add records a failure on b.
func (t *triedSet) add(b *Backend) {
	if t.n < len(t.buf) && !slices.Contains(t.buf[:t.n], b) {
		t.buf[t.n] = b
		t.n++
	}
}

// Cluster is a set of endpoints from a Source with a Balancer over the available ones, active
// health checks and passive outlier detection. It is a component: Run follows the Source and runs
// the health checks. TCPProxy and HTTPProxy run the clusters they are given.
type Cluster struct {
	src     Source
	cfg     config
	log     *zap.Logger
	metrics *metrics
	health  *HealthCheck
	outlier Outlier

	snap      atomic.Pointer[snapshot]
	runMu     sync.Mutex
	cur       *clusterRun // the Run in progress; nil when none
	ready     chan struct{}
	readyOnce sync.Once
	kick      chan struct{} // buffered 1: wakes Run to rebuild and re-arm the readmission timer

	mu       sync.Mutex
	backends map[string]*Backend
	checks   sync.WaitGroup
	runCtx   context.Context // set while Run runs, for starting health checks
	looping  bool            // Run's loop runs: it rebuilds the snapshot when dirty
	dirty    bool            // the snapshot is older than the state under mu
}

// NewCluster returns a Cluster over src. Options used: WithName, WithBalancer, WithHealthCheck,
// WithOutlier, WithPanicThreshold, WithCircuitBreaker, WithLogger, WithRegisterer. It starts
// nothing; the current endpoints of src are usable at once, later changes once Run runs.
func NewCluster(src Source, opts ...Option) (*Cluster, error) {
	if src == nil {
		return nil, &ConfigError{Field: "source", Reason: "is nil"}
	}
	cfg := newConfig(opts)
	if cfg.balancer == nil {
		return nil, &ConfigError{Field: "balancer", Reason: "is nil"}
	}
	if cfg.maxConcurrent < 0 || cfg.maxPending < 0 {
		return nil, &ConfigError{Field: "circuit breaker", Reason: fmt.Sprintf("limits %d and %d: want 0 or more", cfg.maxConcurrent, cfg.maxPending)}
	}
	if cfg.panicThreshold < 0 || cfg.panicThreshold > 100 {
		return nil, &ConfigError{Field: "panic threshold", Reason: "must be 0..100"}
	}
	m, err := newMetrics(cfg.name, cfg.reg)
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		src: src, cfg: cfg, metrics: m,
		log:      cfg.logger.Named("ambassador").With(zap.String("cluster", cfg.name)),
		outlier:  cfg.outlier.withDefaults(),
		ready:    make(chan struct{}),
		kick:     make(chan struct{}, 1),
		backends: map[string]*Backend{},
	}
	if cfg.outlier.ConsecutiveFailures < 0 {
		c.outlier.ConsecutiveFailures = -1
	}
	if cfg.health != nil {
		h := cfg.health.withDefaults()
		c.health = &h
	}
	eps, _ := src.Endpoints()
	c.mu.Lock()
	c.update(eps)
	c.mu.Unlock()
	return c, nil
}

// Name returns the cluster's name.
func (c *Cluster) Name() string { return c.cfg.name }

// Ready is closed once Run has taken the Source's first set (and started health checks), and stays
// closed when Run returns. For a DNS or File source that is after its first lookup or load (see
// their Run).
func (c *Cluster) Ready() <-chan struct{} { return c.ready }

// Run follows the Source, runs health checks and readmits ejected endpoints until ctx ends. It
// returns nil then, after the Source and every health check goroutine have stopped. A Cluster has
// one Run at a time: Run returns ErrRunning while another Run runs, and once that has returned, a
// new Run takes the cluster over as it is (its endpoints, ejections and health) and restarts its
// Source and health checks; Ready, closed by the first, stays closed.
func (c *Cluster) Run(ctx context.Context) error {
	r, mine := c.begin()
	if !mine {
		return ErrRunning
	}
	return c.run(ctx, r)
}

// clusterRun is one Run of a Cluster: stopped is closed when it has returned err.
type clusterRun struct {
	stopped chan struct{}
	err     error
}

// begin returns the Run in progress, or a new one that the caller runs (mine).
func (c *Cluster) begin() (r *clusterRun, mine bool) {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	if c.cur != nil {
		return c.cur, false
	}
	c.cur = &clusterRun{stopped: make(chan struct{})}
	return c.cur, true
}

// run is Run for r, which begin gave the caller. When it returns, no Run is in progress and none
// of its goroutines runs; a later Run starts every backend's health check again.
func (c *Cluster) run(ctx context.Context, r *clusterRun) (err error) {
	defer func() {
		// Deferred first, so it runs last: once every goroutine of Run has exited.
		c.mu.Lock()
		c.runCtx = nil
		for _, b := range c.backends {
			if b.stopCheck != nil {
				b.stopCheck()
				b.stopCheck = nil
			}
		}
		c.mu.Unlock()
		c.runMu.Lock()
		c.cur = nil
		r.err = err
		c.runMu.Unlock()
		close(r.stopped)
	}()
	ctx, cancel := context.WithCancel(ctx)
	srcErr := make(chan error, 1)
	go func() { srcErr <- c.src.Run(ctx) }()
	defer func() {
		cancel()
		<-srcErr
		c.checks.Wait()
	}()

	if l, ok := c.src.(loader); ok {
		// Ready means the source's set is in: wait for its first lookup or load.
		select {
		case <-l.firstLoad():
		case err := <-srcErr:
			srcErr <- err // for the deferred wait
			if err != nil {
				return fmt.Errorf("endpoint source: %w", err)
			}
			return nil
		case <-ctx.Done():
			return nil
		}
	}
	eps, changed := c.src.Endpoints()
	c.mu.Lock()
	c.runCtx = ctx
	c.looping = true
	c.update(eps)
	for _, b := range c.backends {
		c.startCheck(b)
	}
	s, seps := c.collect()
	c.mu.Unlock()
	c.build(s, seps) // before Ready: Ready means the set is in
	defer func() {
		// From now on an ejection rebuilds the snapshot itself; one not yet rebuilt is now.
		c.mu.Lock()
		c.looping = false
		if c.dirty {
			c.rebuild()
		}
		c.mu.Unlock()
	}()
	c.readyOnce.Do(func() { close(c.ready) })

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		// Ejections (see eject), readmissions and the Source's changes (see update) are
		// rebuilt here, the balancer built outside c.mu: neither the request that ejects nor
		// anyone else needing c.mu waits for it.
		c.mu.Lock()
		next := c.readmit(time.Now())
		var s *snapshot
		var eps []Endpoint
		if c.dirty {
			s, eps = c.collect()
		}
		c.mu.Unlock()
		if s != nil {
			c.build(s, eps)
		}
		if next.IsZero() {
			timer.Reset(time.Hour)
		} else {
			timer.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-srcErr:
			srcErr <- err // for the deferred wait
			if err != nil {
				return fmt.Errorf("endpoint source: %w", err)
			}
			return nil
		case <-changed:
			eps, changed = c.src.Endpoints()
			c.mu.Lock()
			c.update(eps)
			c.mu.Unlock()
		case <-c.kick:
		case <-timer.C:
		}
	}
}

// update reconciles backends with eps and has the snapshot rebuilt: at once without Run's loop,
// else by the loop, outside c.mu (see changed); meanwhile the endpoints eps no longer has are
// marked out, so Acquire sends them no request another endpoint can take. c.mu held.
func (c *Cluster) update(eps []Endpoint) {
	seen := make(map[string]bool, len(eps))
	for _, e := range eps {
		seen[e.Addr] = true
		b := c.backends[e.Addr]
		if b == nil {
			b = &Backend{Endpoint: e, c: c, healthy: true, m: c.metrics.forEndpoint(e.Addr)}
			if c.cfg.maxConcurrent > 0 {
				b.sem = make(chan struct{}, c.cfg.maxConcurrent)
			}
			b.idle.max = c.cfg.maxIdlePerEp
			c.backends[e.Addr] = b
			c.startCheck(b)
			c.log.Info("endpoint added", zap.String("endpoint", e.Addr), zap.Int("weight", e.weight()))
			continue
		}
		if b.Weight != e.Weight {
			// Weight changes keep the Backend (its in-flight state), only the balancer changes.
			b.Weight = e.Weight
		}
	}
	for addr, b := range c.backends {
		if seen[addr] {
			continue
		}
		delete(c.backends, addr)
		b.retired.Store(true)
		b.out.Store(true)
		if b.stopCheck != nil {
			b.stopCheck()
		}
		b.idle.closeAll()
		c.metrics.drop(addr)
		c.log.Info("endpoint removed; draining", zap.String("endpoint", addr), zap.Int64("active", b.active.Load()))
	}
	if !c.looping {
		c.rebuild()
		return
	}
	c.dirty = true // Run's loop, whose goroutine this is, rebuilds next
}

// rebuild makes a new snapshot from c.backends. c.mu held.
func (c *Cluster) rebuild() { c.build(c.collect()) }

// collect returns the snapshot of c.backends' state without its balancer, and the endpoints to
// build that over, for build; it marks the snapshot up to date (c.dirty false), and sets each
// Backend's out and the availability metrics as they are in it. c.mu held.
func (c *Cluster) collect() (*snapshot, []Endpoint) {
	all := make([]*Backend, 0, len(c.backends))
	for _, b := range c.backends {
		all = append(all, b)
	}
	slices.SortFunc(all, func(a, b *Backend) int {
		if a.Addr < b.Addr {
			return -1
		}
		return 1
	})
	var avail []*Backend
	for _, b := range all {
		ok := b.healthy && !b.ejected
		b.out.Store(!ok)
		if ok {
			avail = append(avail, b)
			b.m.available.Set(1)
		} else {
			b.m.available.Set(0)
		}
	}
	c.dirty = false
	s := &snapshot{all: all, pick: avail, avail: len(avail)}
	if len(all) > 0 && c.cfg.panicThreshold > 0 && len(avail)*100 < c.cfg.panicThreshold*len(all) {
		s.pick, s.panic = all, true
	}
	eps := make([]Endpoint, len(s.pick))
	for i, b := range s.pick {
		eps[i] = b.Endpoint
	}
	return s, eps
}

// build builds the balancer of s over eps, from collect, makes s the snapshot, and sets the
// panic metric as s has it, so that it goes with what Acquire and Status see; it logs entering
// and leaving panic mode (not every build in it). Builds never overlap, so none replaces a
// snapshot collected after its own: while c.looping is true only Run's goroutine builds (changed
// leaves rebuilds to it), and while it is false every build is under c.mu (Run flips it under
// c.mu, its loop's last build done before it sets false).
func (c *Cluster) build(s *snapshot, eps []Endpoint) {
	s.bal = c.cfg.balancer(eps)
	was := c.snap.Swap(s)
	if s.panic {
		c.metrics.panic.Set(1)
	} else {
		c.metrics.panic.Set(0)
	}
	switch {
	case s.panic && (was == nil || !was.panic):
		c.log.Warn("panic mode: balancing over all endpoints", zap.Int("available", s.avail), zap.Int("total", len(s.all)))
	case !s.panic && was != nil && was.panic:
		c.log.Info("panic mode over: balancing over the available endpoints", zap.Int("available", s.avail), zap.Int("total", len(s.all)))
	}
}

// Lease is one endpoint taken for one request or connection; Release it exactly once.
type Lease struct {
	Backend *Backend
	bal     Balancer // nil when Backend is outside the balancer's count (see acquire)
	i       int
}

// Release returns the lease's circuit-breaker slot and tells the balancer the request is done.
func (l Lease) Release() {
	b := l.Backend
	if b == nil {
		return
	}
	if b.sem != nil {
		<-b.sem
	}
	b.active.Add(-1)
	b.m.active.Dec()
	done(l.bal, l.i)
}

// done tells bal, unless nil, that the request sent to endpoint i has finished.
func done(bal Balancer, i int) {
	if bal != nil {
		bal.Done(i)
	}
}

// taker is a Balancer that counts the requests in flight on each endpoint (p2c): take(i) counts
// one more on endpoint i, for a request it did not Pick, that Done(i) ends as a picked one's.
type taker interface{ take(i int) }

// Acquire picks an endpoint for a request with hash key and takes a circuit-breaker slot on it
// (waiting, while ctx allows, if the endpoint is at its concurrency limit but under its pending
// limit). It avoids the endpoints in tried, and one ejected (or removed from the Source) since
// the balancer was last built, when another can take the request. When the balancer keeps
// picking endpoints to avoid or at both their concurrency and pending limits, the others are
// tried in turn, in address order after its last pick (so a hashing balancer's retries stay
// deterministic), and the first with room takes the request (a built-in P2C counts it as it
// counts its own picks). When none of them has room (or there are none), a tried endpoint takes
// the request again: the balancer's last pick if it is tried, else the first tried one after it
// in address order, skipping those at both limits and (outside panic mode) those that have become
// unavailable. Acquire returns ErrOverloaded only when every endpoint still available is at both
// limits. An endpoint ejected since the balancer was built, outside panic mode, takes the request
// only when every other has become unavailable too (the balancer's last pick, then). It does not
// allocate.
func (c *Cluster) Acquire(ctx context.Context, key uint64, tried []*Backend) (Lease, error) {
	return c.acquire(ctx, key, tried, true)
}

// errWouldWait is acquire's answer, when it must not wait, for an endpoint at its concurrency
// limit with room among the pending requests.
var errWouldWait = errors.New("ambassador: endpoint at its concurrency limit")

// acquire is Acquire; with wait false it returns errWouldWait instead of waiting for a slot.
func (c *Cluster) acquire(ctx context.Context, key uint64, tried []*Backend, wait bool) (Lease, error) {
	s := c.snap.Load()
	n := len(s.pick)
	if n == 0 {
		return Lease{}, ErrNoEndpoint
	}
	attempts := n + 2
	i := -1
	for a := 0; a < attempts; a++ {
		k := key
		if a > 0 || len(tried) > 0 {
			// Distinct for every (retry, pick) pair, so a retry does not repeat its predecessor's
			// picks.
			k = RetryKey(key, len(tried)*attempts+a)
		}
		i = s.bal.Pick(k)
		if i < 0 || i >= n {
			return Lease{}, ErrNoEndpoint
		}
		if s.avoid(s.pick[i], tried) {
			s.bal.Done(i)
			continue
		}
		if l, err := c.slot(ctx, s.pick[i], s.bal, i, wait); err != ErrOverloaded {
			return l, err
		}
	}
	// Every pick was to be avoided or had no room: the others in turn, after the last pick.
	candidates := false
	for d := 1; d <= n; d++ {
		j := (i + d) % n
		if s.avoid(s.pick[j], tried) {
			continue
		}
		candidates = true
		if l, err := c.slot(ctx, s.pick[j], counted(s.bal, j), j, wait); err != ErrOverloaded {
			return l, err
		}
	}
	// None untried and available has room: one tried already (the balancer's last pick first,
	// then in address order after it) that is available and has room.
	for d := range n {
		j := (i + d) % n
		if b := s.pick[j]; !slices.Contains(tried, b) || !s.panic && b.out.Load() {
			continue // untried and available: had its turn above
		}
		candidates = true
		if l, err := c.slot(ctx, s.pick[j], counted(s.bal, j), j, wait); err != ErrOverloaded {
			return l, err
		}
	}
	if candidates {
		return Lease{}, ErrOverloaded
	}
	// Every endpoint is unavailable (out, outside panic mode): the balancer's last pick.
	return c.slot(ctx, s.pick[i], counted(s.bal, i), i, wait)
}

// counted returns what is to be told when a request sent to endpoint i of bal without bal's pick
// is done: bal, having counted the request, if it counts requests in flight (a taker), else nil.
func counted(bal Balancer, i int) Balancer {
	if t, ok := bal.(taker); ok {
		t.take(i)
		return bal
	}
	return nil
}

// slot takes a circuit-breaker slot on b, endpoint i of bal (nil: a request outside bal's count),
// for a lease, as Acquire does: it returns ErrOverloaded itself (never wrapped) when b is at both
// its limits. Unless it returns a lease, it tells bal the request sent to i is done.
func (c *Cluster) slot(ctx context.Context, b *Backend, bal Balancer, i int, wait bool) (Lease, error) {
	if b.sem != nil {
		select {
		case b.sem <- struct{}{}:
		default:
			if err := c.await(ctx, b, wait); err != nil {
				done(bal, i)
				return Lease{}, err
			}
		}
	}
	b.active.Add(1)
	b.m.active.Inc()
	return Lease{Backend: b, bal: bal, i: i}, nil
}

// await takes a slot on b, at its concurrency limit, once one is free, unless b is at its pending
// limit too (ErrOverloaded), wait is false (errWouldWait) or ctx ends first (its error): slot's
// slow path, for a full endpoint.
func (c *Cluster) await(ctx context.Context, b *Backend, wait bool) error {
	if b.pending.Add(1) > int64(c.cfg.maxPending) {
		b.pending.Add(-1)
		return ErrOverloaded
	}
	defer b.pending.Add(-1)
	if !wait {
		return errWouldWait
	}
	select {
	case b.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Report records the outcome of one request or connection attempt for outlier detection and
// metrics: ok false counts towards ejecting b.
func (c *Cluster) Report(b *Backend, ok bool, took time.Duration) {
	b.m.requests.Inc()
	b.m.latency.Observe(took.Seconds())
	if ok {
		if b.failures.Load() != 0 {
			b.failures.Store(0)
		}
		return
	}
	b.m.errors.Inc()
	if c.outlier.ConsecutiveFailures < 0 {
		return
	}
	if int(b.failures.Add(1)) >= c.outlier.ConsecutiveFailures {
		c.eject(b)
	}
}

// eject ejects b if the maximum ejection percentage allows. Whatever the outcome, b's count of
// consecutive failures starts over: an endpoint whose ejection was skipped is tried again after
// as many more failures, and one ejected counts afresh when readmitted.
// It runs on a request's goroutine: see changed for when b stops taking requests.
func (c *Cluster) eject(b *Backend) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer b.failures.Store(0)
	if b.ejected || b.retired.Load() {
		return
	}
	ejected := 0
	for _, o := range c.backends {
		if o.ejected {
			ejected++
		}
	}
	if ejected > 0 && (ejected+1)*100 > c.outlier.MaxEjectionPercent*len(c.backends) {
		c.log.Warn("ejection skipped: max ejection percent reached", zap.String("endpoint", b.Addr))
		return
	}
	b.ejections++
	d := c.outlier.ejection(b.ejections)
	b.ejected, b.ejectedUntil = true, time.Now().Add(d)
	b.m.ejections.Inc()
	c.log.Warn("endpoint ejected", zap.String("endpoint", b.Addr), zap.Duration("for", d), zap.Int("times", b.ejections))
	c.changed(b)
}

// changed has the snapshot rebuilt for a change of b's availability (ejected, or healthy). The
// rebuild (for a ring or maglev over many endpoints, milliseconds) is left to Run's loop, which
// builds the balancer outside c.mu, so neither the goroutine that changed b (a request's, for an
// ejection) nor others needing c.mu wait for it; b is marked out at once: from changed's return
// on, Acquire sends an unavailable b no request it had not already picked, unless every endpoint
// of the snapshot has become unavailable (see Acquire), and Run's loop has the new snapshot in as
// soon as it has built it. Without Run's loop (before Run or after it), changed rebuilds the
// snapshot itself. c.mu held.
func (c *Cluster) changed(b *Backend) {
	if !c.looping {
		c.rebuild()
		return
	}
	b.out.Store(!b.healthy || b.ejected)
	c.dirty = true
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// readmit returns ejected endpoints whose time is up, marking the snapshot dirty, and returns the
// next expiry. c.mu held.
func (c *Cluster) readmit(now time.Time) time.Time {
	var next time.Time
	changed := false
	for _, b := range c.backends {
		if !b.ejected {
			continue
		}
		if !now.Before(b.ejectedUntil) {
			b.ejected = false
			b.failures.Store(0)
			changed = true
			c.log.Info("endpoint readmitted", zap.String("endpoint", b.Addr))
			continue
		}
		if next.IsZero() || b.ejectedUntil.Before(next) {
			next = b.ejectedUntil
		}
	}
	if changed {
		c.dirty = true
	}
	return next
}

// startCheck starts b's health check goroutine if checks are on and Run runs. c.mu held.
func (c *Cluster) startCheck(b *Backend) {
	if c.health == nil || c.runCtx == nil || b.stopCheck != nil {
		return
	}
	ctx, cancel := context.WithCancel(c.runCtx)
	b.stopCheck = cancel
	h := *c.health
	ep := b.Endpoint // copied under c.mu: weight changes rewrite b.Weight
	c.checks.Add(1)
	go func() {
		defer c.checks.Done()
		t := time.NewTicker(h.Interval)
		defer t.Stop()
		for {
			cctx, ccancel := context.WithTimeout(ctx, h.Timeout)
			err := h.Check(cctx, ep)
			ccancel()
			if ctx.Err() != nil {
				return
			}
			c.checked(b, err, h)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

func (c *Cluster) checked(b *Backend, err error, h HealthCheck) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		b.hcOK, b.hcFail = b.hcOK+1, 0
		if !b.healthy && b.hcOK >= h.HealthyThreshold {
			b.healthy = true
			c.log.Info("endpoint healthy", zap.String("endpoint", b.Addr))
			c.changed(b)
		}
		return
	}
	b.hcOK, b.hcFail = 0, b.hcFail+1
	if b.healthy && b.hcFail >= h.UnhealthyThreshold {
		b.healthy = false
		b.m.ejections.Inc()
		c.log.Warn("endpoint unhealthy", zap.String("endpoint", b.Addr), zap.Error(err))
		c.changed(b)
	}
}

// EndpointStatus is one endpoint's state as Status reports it.
type EndpointStatus struct {
	Endpoint
	// Available: healthy and not ejected. In panic mode (Status's panicMode) the cluster sends
	// traffic to every endpoint, those not Available too.
	Available bool
	Healthy   bool // active health check verdict
	Ejected   bool
	Ejections int
	Active    int64
}

// Status returns every endpoint's state, sorted by address, and whether panic mode is on.
func (c *Cluster) Status() (eps []EndpointStatus, panicMode bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.snap.Load()
	for _, b := range s.all {
		eps = append(eps, EndpointStatus{Endpoint: b.Endpoint, Available: b.healthy && !b.ejected,
			Healthy: b.healthy, Ejected: b.ejected, Ejections: b.ejections, Active: b.active.Load()})
	}
	return eps, s.panic
}

// Statusz is the cluster's table for a /statusz page.
func (c *Cluster) Statusz() (string, []string, [][]string) {
	eps, p := c.Status()
	rows := make([][]string, 0, len(eps))
	for _, e := range eps {
		rows = append(rows, []string{e.Addr, strconv.Itoa(e.weight()), strconv.FormatBool(e.Available),
			strconv.FormatBool(e.Healthy), strconv.FormatBool(e.Ejected), strconv.Itoa(e.Ejections),
			strconv.FormatInt(e.Active, 10)})
	}
	title := "ambassador cluster " + c.cfg.name
	if p {
		title += " (panic mode)"
	}
	return title, []string{"endpoint", "weight", "available", "healthy", "ejected", "ejections", "active"}, rows
}
