package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Limits of the hook server's listener.
const (
	hookReadHeaderTimeout = 5 * time.Second
	hookReadTimeout       = 10 * time.Second
	hookWriteTimeout      = 60 * time.Second
	hookIdleTimeout       = 90 * time.Second
	hookMaxHeaderBytes    = 16 << 10
	hookMaxBodyBytes      = 64 << 10
)

// Server is the hook server: the container's management interface over HTTP. Looking up, it serves
// health (/livez, /readyz, /healthz, /startupz), /metrics, /configz, /logz, /statusz and, when enabled,
// /debug/pprof/. Looking down, it takes Kubernetes' lifecycle hooks: POST /prestop and POST
// /quitquitquit (wired by App, or by HandlePreStop and HandleQuit).
//
// Server is a Component. Configure it (AddCheck, AddConfig, AddStatus, Handle, ...) before Run.
type Server struct {
	opts    options
	log     *zap.Logger
	metrics *metrics
	started time.Time

	mu       sync.Mutex
	checks   map[Probe][]*check
	configs  []namedValue
	statuses []StatusProvider
	extra    []route
	preStop  func(ctx context.Context) error
	quit     func()
	running  bool

	stateMu   sync.Mutex   // serializes state changes
	state     atomic.Int32 // a State
	everReady atomic.Bool
	priority  atomic.Value // string
	addr      atomic.Value // string
	ready     chan struct{}
	calls     checkCalls // check Funcs still running
}

type namedValue struct {
	name string
	v    any
}

type route struct {
	pattern string
	h       http.Handler
}

// NewServer returns a hook server. It listens on DefaultAdminAddr unless WithAddr or WithListener says
// otherwise. It starts in StateStarting: /readyz and /startupz fail until SetState(StateReady).
func NewServer(opts ...Option) (*Server, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.listener == nil {
		if _, _, err := net.SplitHostPort(o.addr); err != nil {
			return nil, fmt.Errorf("lifecycle: admin address %q: %w", o.addr, err)
		}
	}
	m, err := newMetrics(o.registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:    o,
		log:     o.logger.Named("hooks"),
		metrics: m,
		checks:  map[Probe][]*check{},
		ready:   make(chan struct{}),
	}
	s.SetState(StateStarting)
	s.priority.Store("")
	s.addr.Store("")
	return s, nil
}

// AddCheck adds c to probe p. Readiness also includes the server's own "lifecycle" check (ready only in
// StateReady), startup its own "started" check, and /healthz runs the liveness and readiness checks
// together. The names "lifecycle" and "started" are reserved for those built-ins.
func (s *Server) AddCheck(p Probe, c Check) error {
	if c.Name == "" || strings.Contains(c.Name, "/") {
		return fmt.Errorf("lifecycle: check name %q: must be non-empty and without '/'", c.Name)
	}
	if c.Name == lifecycleCheckName || c.Name == startedCheckName {
		return fmt.Errorf("lifecycle: check name %q: reserved for the built-in check", c.Name)
	}
	if c.Func == nil {
		return fmt.Errorf("lifecycle: check %q: nil Func", c.Name)
	}
	if p < Livez || p > Startupz {
		return fmt.Errorf("lifecycle: check %q: unknown probe %v", c.Name, p)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return fmt.Errorf("lifecycle: check %q: server already running", c.Name)
	}
	for _, x := range s.checks[p] {
		if x.Name == c.Name {
			return fmt.Errorf("lifecycle: check %q: already added to %s", c.Name, p)
		}
	}
	s.checks[p] = append(s.checks[p], &check{Check: c})
	return nil
}

// AddConfig shows v under name on /configz, with secrets redacted (see Redact). v is read on each
// request, so a pointer shows the current configuration.
func (s *Server) AddConfig(name string, v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.configs = append(s.configs, namedValue{name, v})
}

// AddStatus adds p's section to /statusz.
func (s *Server) AddStatus(p StatusProvider) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statuses = append(s.statuses, p)
}

// Handle serves h at pattern (http.ServeMux syntax) beside the built-in endpoints.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.extra = append(s.extra, route{pattern, h})
}

// HandlePreStop makes POST /prestop call f and answer when it returns: 200 when it returned nil,
// 503 with the reason otherwise. Without it /prestop answers 404.
func (s *Server) HandlePreStop(f func(ctx context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.preStop = f
}

// HandleQuit makes POST /quitquitquit call f and answer 200. Without it /quitquitquit answers 404.
func (s *Server) HandleQuit(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quit = f
}

// SetState sets the state readiness reports (and podblocks_lifecycle_state shows): only StateReady
// is ready. Once the server has been ready, /startupz passes for good.
func (s *Server) SetState(st State) {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	s.setStateLocked(st)
}

// setStateFrom sets st if the state is one of from, and reports whether it did.
func (s *Server) setStateFrom(st State, from ...State) bool {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if !slices.Contains(from, s.State()) {
		return false
	}
	s.setStateLocked(st)
	return true
}

func (s *Server) setStateLocked(st State) {
	s.state.Store(int32(st))
	s.metrics.state.Set(float64(st))
	if st == StateReady {
		s.everReady.Store(true)
	}
}

// State returns the state set by SetState.
func (s *Server) State() State { return State(s.state.Load()) }

// SetPriority sets the process' priority class shown on /statusz.
func (s *Server) SetPriority(class string) { s.priority.Store(class) }

// Ready is closed once the server listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the address the server listens on, or "" before it does.
func (s *Server) Addr() string { return s.addr.Load().(string) }

func (s *Server) checksFor(p Probe) []*check {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch p {
	case Readyz:
		return append([]*check{s.lifecycleCheck()}, s.checks[Readyz]...)
	case Startupz:
		return append([]*check{s.startedCheck()}, s.checks[Startupz]...)
	case healthz:
		out := append([]*check{s.lifecycleCheck()}, s.checks[Livez]...)
		return append(out, s.checks[Readyz]...)
	}
	return s.checks[p]
}

// Names of the built-in checks, which AddCheck refuses.
const (
	lifecycleCheckName = "lifecycle"
	startedCheckName   = "started"
)

func (s *Server) lifecycleCheck() *check {
	return &check{Check: Check{Name: lifecycleCheckName, Func: func(context.Context) error {
		if st := s.State(); st != StateReady {
			return errors.New(st.String())
		}
		return nil
	}}}
}

func (s *Server) startedCheck() *check {
	return &check{Check: Check{Name: startedCheckName, Func: func(context.Context) error {
		if !s.everReady.Load() {
			return errors.New("not started yet")
		}
		return nil
	}}}
}

// minCheckWait is how long Server.Run waits for the check Funcs still running when it stops with a
// safety margin of 0 (which would otherwise leave a Func that honours its context running after
// Run returned). An App with a margin of 0 gives its hook server DefaultStopTimeout to stop in.
const minCheckWait = 100 * time.Millisecond

// Run listens and serves until ctx is done, then shuts the listener down gracefully. Check Funcs run
// on ctx (with each check's Timeout), not on the context of the probe request that started them. Run
// returns once the check Funcs it called have returned, or once half the safety margin
// (WithSafetyMargin, default DefaultSafetyMargin; 100 ms for a margin of 0) has passed since the
// listener shut down: a Func that ignores its cancelled context is then left running (at most one
// call per check) and named in a warning in the log. Half, so that an App's hook server, which has
// the margin to stop in, still stops in time.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("lifecycle: server already running")
	}
	s.running = true
	s.started = time.Now()
	s.calls.setBase(ctx) // check calls run on ctx, not on the probe request that started them
	var periodic []*check
	for _, cs := range s.checks {
		for _, c := range cs {
			if c.Interval > 0 {
				periodic = append(periodic, c)
			}
		}
	}
	s.mu.Unlock()

	ln := s.opts.listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.opts.addr); err != nil {
			return fmt.Errorf("lifecycle: hook server: %w", err)
		}
	}
	s.addr.Store(ln.Addr().String())
	srv := &http.Server{
		Handler:           s.mux(),
		ReadHeaderTimeout: hookReadHeaderTimeout,
		ReadTimeout:       hookReadTimeout,
		WriteTimeout:      hookWriteTimeout,
		IdleTimeout:       hookIdleTimeout,
		MaxHeaderBytes:    hookMaxHeaderBytes,
		ErrorLog:          zap.NewStdLog(s.log),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}

	var wg sync.WaitGroup
	for _, c := range periodic {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(c.Interval)
			defer t.Stop()
			for {
				c.run(ctx, &s.calls)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	close(s.ready)
	s.log.Info("hook server listening", zap.String("addr", s.Addr()))

	var err error
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if serr := srv.Shutdown(sctx); serr != nil {
			srv.Close()
		}
		cancel()
		<-serveErr
	case err = <-serveErr:
		err = fmt.Errorf("lifecycle: hook server: %w", err)
	}
	wg.Wait()
	// Every check's context is cancelled by now. A Func that ignores its context cannot be stopped:
	// wait for it up to half the safety margin (the time kept back for stopping, which is also an
	// App's stop timeout for this server; minCheckWait for a margin of 0), then leave it running and
	// say which check it is, rather than hold the pod until the kubelet kills it.
	wait := s.opts.margin / 2
	if s.opts.margin == 0 {
		wait = minCheckWait
	}
	if stuck := s.calls.wait(wait); len(stuck) > 0 {
		s.log.Warn("health checks still running after the hook server stopped; not waiting for them", zap.Strings("checks", stuck), zap.Duration("waited", wait))
	}
	return err
}

func (s *Server) mux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, p := range []Probe{Livez, Readyz, Startupz} {
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveProbe(p, w, r) })
		mux.Handle("/"+p.String(), h)
		mux.Handle("/"+p.String()+"/", h)
	}
	mux.HandleFunc("/healthz", s.serveHealthz)
	mux.HandleFunc("/healthz/", s.serveHealthz)

	gatherers := prometheus.Gatherers{s.processRegistry()}
	if s.opts.gatherer != nil {
		gatherers = append(gatherers, s.opts.gatherer)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(gatherers, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      zapPromLogger{s.log},
		Timeout:       10 * time.Second,
	}))
	mux.HandleFunc("/configz", s.serveConfigz)
	mux.HandleFunc("/statusz", s.serveStatusz)
	mux.HandleFunc("/logz", s.serveLogz)
	mux.HandleFunc("/prestop", s.servePreStop)
	mux.HandleFunc("/quitquitquit", s.serveQuit)
	if s.opts.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	s.mu.Lock()
	for _, r := range s.extra {
		mux.Handle(r.pattern, r.h)
	}
	s.mu.Unlock()
	return mux
}

func (s *Server) processRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// serveHealthz runs liveness and readiness checks together (kube-apiserver's deprecated /healthz).
func (s *Server) serveHealthz(w http.ResponseWriter, r *http.Request) {
	// Answer as a probe over the union of livez and readyz checks.
	s.serveProbe(healthz, w, r)
}

// healthz is the pseudo-probe behind /healthz.
const healthz Probe = -1

func (s *Server) serveConfigz(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, "GET")
		return
	}
	s.mu.Lock()
	configs := append([]namedValue(nil), s.configs...)
	s.mu.Unlock()
	out := make(map[string]any, len(configs))
	for _, c := range configs {
		out[c.name] = Redact(c.v)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) serveLogz(w http.ResponseWriter, r *http.Request) {
	if s.opts.level == nil {
		http.Error(w, "no runtime log level is configured", http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodPut:
	default:
		methodNotAllowed(w, "GET, PUT")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, hookMaxBodyBytes)
	old := s.opts.level.Level()
	s.opts.level.ServeHTTP(w, r)
	if now := s.opts.level.Level(); now != old {
		s.log.Info("log level changed", zap.Stringer("from", old), zap.Stringer("to", now))
	}
}

// errStopping is what an App's preStop hook returns when the group is stopping without a drain:
// servePreStop answers it with 200 "stopping".
var errStopping = errors.New("lifecycle: stopping")

func (s *Server) servePreStop(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	f := s.preStop
	s.mu.Unlock()
	if f == nil {
		http.Error(w, "no preStop hook is configured", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		// Kubernetes' httpGet lifecycle handler sends GET; POST is what people type.
		methodNotAllowed(w, "POST, GET")
		return
	}
	// The drain may take the whole grace period: lift the write deadline for this answer.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	if err := f(r.Context()); errors.Is(err, errStopping) {
		fmt.Fprintln(w, "stopping")
		return
	} else if err != nil {
		http.Error(w, "prestop: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "drained")
}

func (s *Server) serveQuit(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	f := s.quit
	s.mu.Unlock()
	if f == nil {
		http.Error(w, "no quit hook is configured", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodPost {
		methodNotAllowed(w, "POST")
		return
	}
	f()
	fmt.Fprintln(w, "quitting")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// zapPromLogger adapts a zap logger to promhttp's error log.
type zapPromLogger struct{ l *zap.Logger }

func (z zapPromLogger) Println(v ...any) { z.l.Warn("metrics", zap.String("error", fmt.Sprint(v...))) }
