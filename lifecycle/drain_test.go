package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/lifecycle"
	"github.com/podblocks/podblocks/lifecycletest"
)

// workHandler answers / at once and /work?ms=N after N ms; it counts requests cut off by cancellation
// and, in inflight, /work requests running.
func workHandler(cancelled *atomic.Int64, inflight ...*atomic.Int64) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /work", func(w http.ResponseWriter, r *http.Request) {
		for _, n := range inflight {
			n.Add(1)
			defer n.Add(-1)
		}
		var ms int
		fmt.Sscan(r.URL.Query().Get("ms"), &ms)
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			io.WriteString(w, "done\n")
		case <-r.Context().Done():
			cancelled.Add(1)
		}
	})
	return mux
}

type drainRig struct {
	app      *lifecycle.App
	appURL   string
	hooksURL string
	done     chan struct{}      // closed when Run returned
	err      error              // what Run returned
	cancel   context.CancelFunc // ends Run's ctx
}

func startApp(t *testing.T, handler http.Handler, opts ...lifecycle.Option) *drainRig {
	t.Helper()
	hooksLn, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	app, err := lifecycle.NewApp(append([]lifecycle.Option{lifecycle.WithListener(hooksLn), lifecycle.WithSignals()}, opts...)...)
	must(t, err)
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	hs, err := lifecycle.NewHTTPServerListener(&http.Server{Handler: handler, Protocols: &protocols}, appLn)
	must(t, err)
	must(t, app.Add("app", hs))
	r := &drainRig{app: app, appURL: "http://" + appLn.Addr().String(), hooksURL: "http://" + hooksLn.Addr().String(), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		r.err = app.Run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("app did not stop")
		}
	})
	select {
	case <-app.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("app not ready")
	}
	return r
}

// TestDrainLosesNoRequests runs keep-alive HTTP/1.1 and h2c clients against an App, drains it the way
// Kubernetes deletes a pod, and checks that every request sent while the endpoint was routed succeeded.
// A watcher plays the endpoints controller: it polls /readyz and stops routing new requests to the pod
// once readiness fails, as kube-proxy and load balancers do within the propagation delay.
func TestDrainLosesNoRequests(t *testing.T) {
	var cancelled atomic.Int64
	const propagation = 500 * time.Millisecond
	rig := startApp(t, workHandler(&cancelled), lifecycle.WithPropagationDelay(propagation),
		lifecycle.WithGracePeriod(10*time.Second), lifecycle.WithSafetyMargin(time.Second))

	var routed atomic.Bool
	routed.Store(true)
	h1 := &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	defer h1.CloseIdleConnections()
	defer h2c.CloseIdleConnections()

	var (
		sent, failed atomic.Int64
		protos       sync.Map
		wg           sync.WaitGroup
		errMu        sync.Mutex
		firstErrs    []string
	)
	client := func(tr *http.Transport, i int) {
		defer wg.Done()
		c := &http.Client{Transport: tr, Timeout: 15 * time.Second}
		for n := 0; routed.Load(); n++ {
			url := rig.appURL + "/"
			if n%4 == 0 {
				url = rig.appURL + fmt.Sprintf("/work?ms=%d", 50+i*10) // some requests are in flight at any time
			}
			sent.Add(1)
			resp, err := c.Get(url)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
				protos.Store(resp.Proto, true)
			}
			if err != nil {
				failed.Add(1)
				errMu.Lock()
				if len(firstErrs) < 5 {
					firstErrs = append(firstErrs, err.Error())
				}
				errMu.Unlock()
			}
		}
	}
	for i := range 8 {
		wg.Add(2)
		go client(h1, i)
		go client(h2c, i)
	}
	// Endpoints controller.
	wg.Add(1)
	var notReadyAt time.Time
	go func() {
		defer wg.Done()
		for routed.Load() {
			resp, err := http.Get(rig.hooksURL + "/readyz")
			if err == nil {
				resp.Body.Close()
			}
			if err != nil || resp.StatusCode != 200 {
				notReadyAt = time.Now()
				routed.Store(false)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	// Let load build up, then delete the pod.
	deadline := time.Now().Add(3 * time.Second)
	for sent.Load() < 3000 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	rig.app.Drain()
	select {
	case <-rig.done:
	case <-time.After(15 * time.Second):
		t.Fatal("drain did not finish")
	}
	took := time.Since(start)
	routed.Store(false)
	wg.Wait()

	t.Logf("drain: %d requests (HTTP/1.1 and h2c keep-alive, 16 clients), %d failed, %d cut off; not ready after %v; drain took %v",
		sent.Load(), failed.Load(), cancelled.Load(), notReadyAt.Sub(start).Round(time.Millisecond), took.Round(time.Millisecond))
	if rig.err != nil {
		t.Errorf("Run = %v, want nil (exit 0)", rig.err)
	}
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed during the drain; first errors: %q", failed.Load(), sent.Load(), firstErrs)
	}
	if cancelled.Load() != 0 {
		t.Errorf("%d requests were cut off", cancelled.Load())
	}
	if sent.Load() < 500 {
		t.Errorf("only %d requests sent: too little load to show anything", sent.Load())
	}
	for _, p := range []string{"HTTP/1.1", "HTTP/2.0"} {
		if _, ok := protos.Load(p); !ok {
			t.Errorf("no %s response seen", p)
		}
	}
	if took < propagation {
		t.Errorf("drain took %v, less than the propagation delay %v", took, propagation)
	}
	// The server really is gone afterwards.
	if resp, err := http.Get(rig.appURL + "/"); err == nil {
		resp.Body.Close()
		t.Error("app still answers after the drain")
	}
}

func TestDrainCancelsStragglersAtTheDeadline(t *testing.T) {
	var cancelled, inflight atomic.Int64
	rig := startApp(t, workHandler(&cancelled, &inflight), lifecycle.WithPropagationDelay(0),
		lifecycle.WithGracePeriod(time.Second), lifecycle.WithSafetyMargin(500*time.Millisecond))
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Get(rig.appURL + "/work?ms=60000")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	await.True(t, "the request to reach the handler", 5*time.Second, func() bool { return inflight.Load() > 0 })
	rig.app.Drain()
	select {
	case <-rig.done:
	case <-time.After(10 * time.Second):
		t.Fatal("drain did not finish")
	}
	<-errc
	if cancelled.Load() != 1 {
		t.Errorf("cancelled = %d, want the one straggler cancelled at the deadline", cancelled.Load())
	}
}

func TestPreStopAnswersWhenDrained(t *testing.T) {
	var cancelled atomic.Int64
	rig := startApp(t, workHandler(&cancelled), lifecycle.WithPropagationDelay(200*time.Millisecond),
		lifecycle.WithGracePeriod(5*time.Second), lifecycle.WithSafetyMargin(time.Second))
	start := time.Now()
	code, body := do(t, "POST", rig.hooksURL+"/prestop", "")
	if code != 200 || !strings.Contains(body, "drained") {
		t.Errorf("POST /prestop = %d %q", code, body)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("/prestop answered after %v, before the propagation delay", took)
	}
	select {
	case <-rig.done:
		if rig.err != nil {
			t.Errorf("Run = %v", rig.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("app did not stop after /prestop")
	}
}

func TestQuitSkipsPropagation(t *testing.T) {
	var cancelled atomic.Int64
	rig := startApp(t, workHandler(&cancelled), lifecycle.WithPropagationDelay(time.Minute), lifecycle.WithGracePeriod(2*time.Minute))
	if code, _ := do(t, "GET", rig.hooksURL+"/quitquitquit", ""); code != 405 {
		t.Errorf("GET /quitquitquit = %d, want 405", code)
	}
	if code, _ := do(t, "POST", rig.hooksURL+"/quitquitquit", ""); code != 200 {
		t.Errorf("POST /quitquitquit = %d", code)
	}
	select {
	case <-rig.done:
	case <-time.After(5 * time.Second):
		t.Fatal("/quitquitquit did not stop the app")
	}
}

// Run must not return while a handler cut off by the stop is still running (DESIGN: a component
// returns only after its goroutines exit); the handler here takes 200 ms to notice.
func TestHTTPServerRunWaitsForHandlers(t *testing.T) {
	var started, finished atomic.Bool
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Store(true)
		<-r.Context().Done()
		time.Sleep(200 * time.Millisecond)
		finished.Store(true)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs, err := lifecycle.NewHTTPServerListener(&http.Server{Handler: handler}, ln)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- hs.Run(ctx) }()
	<-hs.Ready()
	go func() {
		if resp, err := http.Get("http://" + hs.Addr() + "/"); err == nil {
			resp.Body.Close()
		}
	}()
	await.True(t, "the request to reach the handler", 5*time.Second, started.Load)
	cancel()
	if err := <-runErr; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if !finished.Load() {
		t.Error("Run returned while a handler was still running")
	}
}

// A request cut off at the drain deadline gets the answer its handler writes on cancellation, not
// an empty reply.
func TestDrainLetsCancelledHandlersAnswer(t *testing.T) {
	var inflight atomic.Int64
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inflight.Add(1)
		<-r.Context().Done()
		http.Error(w, "cut off", http.StatusServiceUnavailable)
	})
	rig := startApp(t, handler, lifecycle.WithPropagationDelay(0),
		lifecycle.WithGracePeriod(time.Second), lifecycle.WithSafetyMargin(500*time.Millisecond))
	type answer struct {
		code int
		body string
		err  error
	}
	answers := make(chan answer, 1)
	go func() {
		resp, err := http.Get(rig.appURL + "/")
		if err != nil {
			answers <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		answers <- answer{resp.StatusCode, string(b), err}
	}()
	await.True(t, "the request to reach the handler", 5*time.Second, func() bool { return inflight.Load() > 0 })
	rig.app.Drain()
	if a := <-answers; a.err != nil || a.code != 503 || a.body != "cut off\n" {
		t.Errorf("request cut off at the deadline: %d %q %v, want 503 \"cut off\"", a.code, a.body, a.err)
	}
}

// A drain that starts while an earlier component is still starting stops the App at once: the
// HTTPServer not started yet has nothing to drain.
func TestDrainWhileStartingStopsAtOnce(t *testing.T) {
	hooksLn, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	app, err := lifecycle.NewApp(lifecycle.WithListener(hooksLn), lifecycle.WithSignals(), lifecycle.WithPropagationDelay(0),
		lifecycle.WithGracePeriod(4*time.Second), lifecycle.WithSafetyMargin(time.Second))
	must(t, err)
	var starting atomic.Bool
	must(t, app.Add("never-ready", &neverReady{running: &starting}))
	hs, err := lifecycle.NewHTTPServerListener(&http.Server{Handler: http.NotFoundHandler()}, appLn)
	must(t, err)
	must(t, app.Add("app", hs))
	done := make(chan error, 1)
	go func() { done <- app.Run(context.Background()) }()
	await.True(t, "the first component to start", 5*time.Second, starting.Load)
	start := time.Now()
	app.Drain()
	// The 3 s the old code waited (grace minus margin) is far above a loaded machine's slack.
	awaitNil(t, done, "Drain", start, 1500*time.Millisecond)
	if c, err := net.Dial("tcp", appLn.Addr().String()); err == nil {
		c.Close()
		t.Error("the HTTP server not started before the drain still accepts connections")
	}
}

// neverReady is a Readier that never becomes ready.
type neverReady struct{ running *atomic.Bool }

func (n *neverReady) Ready() <-chan struct{} { return nil }
func (n *neverReady) Run(ctx context.Context) error {
	n.running.Store(true)
	<-ctx.Done()
	return nil
}

// A failure the App returns is not also logged as an error: the caller reports it (STYLE: log or
// return, not both).
func TestAppReturnsFailureWithoutLoggingIt(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	hooksLn, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	app, err := lifecycle.NewApp(lifecycle.WithListener(hooksLn), lifecycle.WithSignals(), lifecycle.WithLogger(zap.New(core)))
	must(t, err)
	boom := errors.New("no port")
	must(t, app.Add("broken", lifecycle.Func(func(context.Context) error { return boom })))
	if err := app.Run(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want the component's error", err)
	}
	for _, e := range logs.FilterLevelExact(zapcore.ErrorLevel).All() {
		t.Errorf("logged at error level: %q %v", e.Message, e.ContextMap())
	}
}

// A health check stuck for good when the App stops does not turn the stop into a failure: the hook
// server leaves it behind within its stop timeout (the safety margin), and Run returns nil.
func TestDrainWithStuckCheck(t *testing.T) {
	hooksLn, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	app, err := lifecycle.NewApp(lifecycle.WithListener(hooksLn), lifecycle.WithSignals(), lifecycle.WithPropagationDelay(0),
		lifecycle.WithGracePeriod(2*time.Second), lifecycle.WithSafetyMargin(400*time.Millisecond))
	must(t, err)
	release := make(chan struct{})
	defer close(release)
	must(t, app.Hooks().AddCheck(lifecycle.Livez, lifecycle.Check{Name: "deaf", Timeout: 10 * time.Millisecond,
		Func: func(context.Context) error { <-release; return nil }}))
	done := runApp(t, context.Background(), app)
	if code, _ := do(t, "GET", "http://"+hooksLn.Addr().String()+"/livez", ""); code != 500 {
		t.Errorf("GET /livez with a stuck check = %d, want 500", code)
	}
	app.Drain()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after Drain")
	}
}

// When a component finishes on its own, the App marks the pod not ready at once: /readyz fails
// while the others stop, rather than answering 200 for an app server already closed. Run returns
// nil: the component finished, it did not fail.
func TestAppComponentFinishingDrainsReadiness(t *testing.T) {
	hooksLn, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	app, err := lifecycle.NewApp(lifecycle.WithListener(hooksLn), lifecycle.WithSignals(),
		lifecycle.WithGracePeriod(10*time.Second), lifecycle.WithSafetyMargin(3*time.Second))
	must(t, err)
	must(t, app.Add("slow-to-stop", lifecycle.Func(func(ctx context.Context) error {
		<-ctx.Done()
		time.Sleep(time.Second) // flushing
		return nil
	})))
	hs, err := lifecycle.NewHTTPServerListener(&http.Server{Handler: http.NotFoundHandler()}, appLn)
	must(t, err)
	must(t, app.Add("app", hs))
	must(t, app.Add("migrate", lifecycle.Func(func(ctx context.Context) error {
		time.Sleep(300 * time.Millisecond)
		return nil
	})))
	done := make(chan error, 1)
	go func() { done <- app.Run(context.Background()) }()
	<-app.Ready()
	await.True(t, "app server closed", 5*time.Second, refuses(appLn.Addr().String()))
	resp, err := http.Get("http://" + hooksLn.Addr().String() + "/readyz")
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("app server refuses connections while /readyz = 200")
	}
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil (a component finished)", err)
	}
}

// A safety margin under twice CancelAnswerTime shortens the answer window, so the drain still ends
// within the grace period.
func TestDrainSmallMarginKeepsGrace(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	const grace, margin = time.Second, 50 * time.Millisecond
	release := make(chan struct{})
	var inflight atomic.Int64
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inflight.Add(1)
		<-r.Context().Done()
		<-release // slow to answer once cut off
	})
	rig := startApp(t, handler, lifecycle.WithPropagationDelay(0), lifecycle.WithLogger(zap.New(core)),
		lifecycle.WithGracePeriod(grace), lifecycle.WithSafetyMargin(margin))
	defer close(release)
	go func() {
		if resp, err := http.Get(rig.appURL + "/"); err == nil {
			resp.Body.Close()
		}
	}()
	await.True(t, "in flight", 5*time.Second, func() bool { return inflight.Load() > 0 })
	rig.app.Drain()
	await.True(t, "servers drained", 5*time.Second, func() bool { return logs.FilterMessage("servers drained").Len() > 0 })
	took := logs.FilterMessage("servers drained").All()[0].ContextMap()["took"].(time.Duration)
	if took > grace {
		t.Errorf("servers drained after %v, past the %v grace period (margin %v)", took, grace, margin)
	}
}

// Shutdown cuts off a request at its deadline without running the http.Server's RegisterOnShutdown
// functions a second time.
func TestHTTPServerShutdownRunsOnShutdownOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	var inflight atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inflight.Add(1)
		<-r.Context().Done()
	})}
	var hooks atomic.Int64
	srv.RegisterOnShutdown(func() { hooks.Add(1) })
	hs := serveInFlight(t, srv, ln, &inflight)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = hs.Shutdown(ctx)
	time.Sleep(100 * time.Millisecond) // the functions run in goroutines of their own
	if n := hooks.Load(); n != 1 {
		t.Errorf("RegisterOnShutdown function ran %d times, want 1", n)
	}
}

// serveInFlight runs srv on ln as an HTTPServer and sends it a request, once ready; it returns once
// srv's handler counted the request in inflight.
func serveInFlight(t *testing.T, srv *http.Server, ln net.Listener, inflight *atomic.Int64) *lifecycle.HTTPServer {
	t.Helper()
	hs, err := lifecycle.NewHTTPServerListener(srv, ln)
	must(t, err)
	lifecycletest.Start(t, hs)
	lifecycletest.WaitReady(t, hs, 5*time.Second)
	go func() {
		if resp, err := http.Get("http://" + hs.Addr() + "/"); err == nil {
			resp.Body.Close()
		}
	}()
	await.True(t, "in flight", 5*time.Second, func() bool { return inflight.Load() > 0 })
	return hs
}
