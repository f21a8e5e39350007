package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Probe names one of the hook server's health endpoints.
type Probe int

// The probes, following Kubernetes' conventions: a failing liveness probe restarts the container, a
// failing readiness probe takes the pod out of its Services' endpoints, and the startup probe holds the
// other two off until the container has started once.
const (
	Livez Probe = iota
	Readyz
	Startupz
)

func (p Probe) String() string {
	switch p {
	case Livez:
		return "livez"
	case Readyz:
		return "readyz"
	case Startupz:
		return "startupz"
	case healthz:
		return "healthz"
	}
	return fmt.Sprintf("Probe(%d)", int(p))
}

// DefaultCheckTimeout bounds a check whose Timeout is zero.
const DefaultCheckTimeout = time.Second

// Check is one named health check.
type Check struct {
	// Name identifies the check in verbose output, in ?exclude= and as /<probe>/<name>. It must be
	// non-empty, without "/", and unique within its probe.
	Name string
	// Func reports the check's health: nil is healthy, an error says why not.
	Func func(ctx context.Context) error
	// Timeout bounds one call of Func. Zero means DefaultCheckTimeout. A call that outlives its
	// Timeout (a Func that ignores its context) fails every probe with "timed out after <Timeout>"
	// until it returns; no second call of the check starts meanwhile.
	Timeout time.Duration
	// Interval, when positive, runs Func in the background every Interval (while the server runs) and
	// answers probes from the last result; a check that has not run yet fails with "not yet run".
	// Zero runs Func on every probe request.
	Interval time.Duration
}

// checkResult is the outcome of one run of a check.
type checkResult struct {
	err  error
	at   time.Time
	took time.Duration
}

var errNotYetRun = errors.New("not yet run")

type check struct {
	Check
	mu     sync.Mutex
	last   checkResult // for Interval checks: the answer; for others: the last request's, for /statusz
	flight *flight     // the call of Func still running, if any
}

// flight is one call of a check's Func. While it runs, no other call of the same check starts: probes
// wait for it until its deadline and then answer "timed out", so a Func that ignores its context
// holds one goroutine, not one per probe.
type flight struct {
	done     chan struct{}
	err      error // written before done is closed
	deadline time.Time
}

// run calls the check (or joins the call already running) and waits for its answer until ctx ends
// or the call's deadline passes. The call itself runs on the server's context (calls.base), not on
// the ctx of the probe that started it: a prober that gives up (a kubelet timeoutSeconds shorter than
// Timeout, a closed connection) leaves alone, and the others waiting still get the answer.
func (c *check) run(ctx context.Context, calls *checkCalls) checkResult {
	timeout := orDefault(c.Timeout, DefaultCheckTimeout)
	start := time.Now()
	c.mu.Lock()
	f := c.flight
	if f == nil {
		f = &flight{done: make(chan struct{}), deadline: start.Add(timeout)}
		c.flight = f
		calls.start(f, c.Name)
		fctx, cancel := context.WithDeadline(calls.baseContext(), f.deadline)
		go func() {
			defer cancel()
			err := callCheck(fctx, c.Func)
			if !time.Now().Before(f.deadline) { // returned at or after its deadline: late is timed out
				err = timedOut(timeout)
			}
			c.mu.Lock()
			c.flight = nil
			f.err = err
			close(f.done)
			c.mu.Unlock()
			calls.end(f)
		}()
	}
	c.mu.Unlock()
	wctx, cancel := context.WithDeadline(ctx, f.deadline)
	defer cancel()
	var err error
	select {
	case <-f.done:
		err = f.err
	case <-wctx.Done():
		if ctx.Err() != nil && time.Now().Before(f.deadline) {
			// This prober left; the call goes on for the others, and its answer is theirs to record.
			return checkResult{err: ctx.Err(), at: start, took: time.Since(start)}
		}
		err = timedOut(timeout)
	}
	r := checkResult{err: err, at: start, took: time.Since(start)}
	c.mu.Lock()
	c.last = r
	c.mu.Unlock()
	return r
}

func timedOut(timeout time.Duration) error { return fmt.Errorf("timed out after %v", timeout) }

// callCheck calls f, turning a panic into an error.
func callCheck(ctx context.Context, f func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("check panicked: %v", r)
		}
	}()
	return f(ctx)
}

// checkCalls counts the calls of check Funcs still running, so that Server.Run can wait for them.
// The zero value is ready to use.
type checkCalls struct {
	mu      sync.Mutex
	base    context.Context    // the context calls run on: Server.Run's; nil means context.Background
	running map[*flight]string // check name
	idle    *sync.Cond         // on mu, broadcast when running empties; nil until someone waits
}

// setBase sets the context that later calls run on (nil: context.Background).
func (t *checkCalls) setBase(ctx context.Context) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.base = ctx
}

func (t *checkCalls) baseContext() context.Context {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.base == nil {
		return context.Background()
	}
	return t.base
}

func (t *checkCalls) start(f *flight, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.running == nil {
		t.running = map[*flight]string{}
	}
	t.running[f] = name
}

func (t *checkCalls) end(f *flight) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.running, f)
	if len(t.running) == 0 && t.idle != nil {
		t.idle.Broadcast()
	}
}

// wait waits up to d for every call to return, and returns the names of the checks whose calls are
// still running then.
func (t *checkCalls) wait(d time.Duration) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.idle == nil {
		t.idle = sync.NewCond(&t.mu)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if waitCond(ctx, t.idle, func() bool { return len(t.running) == 0 }) {
		return nil
	}
	var names []string
	for _, n := range t.running {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (c *check) result(ctx context.Context, calls *checkCalls) checkResult {
	if c.Interval > 0 {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.last.at.IsZero() {
			return checkResult{err: errNotYetRun}
		}
		return c.last
	}
	return c.run(ctx, calls)
}

func (c *check) lastResult() checkResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// serveProbe answers /<probe>, /<probe>?verbose, ?exclude=name and /<probe>/<name> the way
// kube-apiserver does.
func (s *Server) serveProbe(p Probe, w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	checks := s.checksFor(p)
	name := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/"+p.String()), "/")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	if name != "" {
		for _, c := range checks {
			if c.Name == name {
				if res := c.result(r.Context(), &s.calls); res.err != nil {
					http.Error(w, fmt.Sprintf("internal server error: %v", res.err), http.StatusInternalServerError)
					return
				}
				fmt.Fprint(w, "ok")
				return
			}
		}
		http.Error(w, fmt.Sprintf("no %s check named %q", p, name), http.StatusNotFound)
		return
	}

	q := r.URL.Query()
	_, verbose := q["verbose"]
	excluded := map[string]bool{}
	for _, v := range q["exclude"] {
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				excluded[n] = false
			}
		}
	}
	var b strings.Builder
	failed := false
	for _, c := range checks {
		if _, ok := excluded[c.Name]; ok {
			excluded[c.Name] = true
			fmt.Fprintf(&b, "[+]%s excluded: ok\n", c.Name)
			continue
		}
		if res := c.result(r.Context(), &s.calls); res.err != nil {
			failed = true
			fmt.Fprintf(&b, "[-]%s failed: %v\n", c.Name, res.err)
		} else {
			fmt.Fprintf(&b, "[+]%s ok\n", c.Name)
		}
	}
	var unknown []string
	for n, seen := range excluded {
		if !seen {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		fmt.Fprintf(&b, "warn: some health checks cannot be excluded: no matches for %s\n", strings.Join(unknown, ","))
	}
	if failed {
		fmt.Fprintf(&b, "%s check failed\n", p)
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, b.String())
		return
	}
	if !verbose {
		fmt.Fprint(w, "ok")
		return
	}
	fmt.Fprintf(&b, "%s check passed\n", p)
	fmt.Fprint(w, b.String())
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	http.Error(w, "method not allowed; use "+allow, http.StatusMethodNotAllowed)
}
