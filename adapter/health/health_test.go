package health_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/podblocks/podblocks/adapter/health"
	"github.com/podblocks/podblocks/adaptertest"
	"github.com/podblocks/podblocks/lifecycle"
	"github.com/podblocks/podblocks/lifecycletest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestExec(t *testing.T) {
	adaptertest.TestChecker(t, &health.Exec{Command: []string{"sh", "-c", "exit 0"}},
		&health.Exec{Command: []string{"sh", "-c", "echo db down; exit 3"}})
	err := (&health.Exec{Command: []string{"sh", "-c", "echo db down; exit 3"}}).Check(context.Background())
	if !errors.Is(err, health.ErrUnhealthy) || !strings.Contains(err.Error(), "exit status 3: db down") {
		t.Errorf("error = %v, want ErrUnhealthy with the status and output", err)
	}
	if err := (&health.Exec{Command: []string{"/nonexistent/cmd"}}).Check(context.Background()); err == nil {
		t.Error("missing command reported healthy")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := (&health.Exec{Command: []string{"sleep", "30"}}).Check(ctx); err == nil || time.Since(start) > 10*time.Second {
		t.Errorf("hung command: error %v after %v, want a timeout error promptly", err, time.Since(start))
	}
}

func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	adaptertest.TestChecker(t, &health.TCP{Addr: ln.Addr().String()}, &health.TCP{Addr: closedAddr(t)})
}

func TestHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		w.WriteHeader(code)
	}))
	defer srv.Close()
	adaptertest.TestChecker(t, &health.HTTP{URL: srv.URL + "/200"}, &health.HTTP{URL: srv.URL + "/503"})
	for code, healthy := range map[int]bool{204: true, 302: true, 404: false, 500: false} {
		err := (&health.HTTP{URL: fmt.Sprintf("%s/%d", srv.URL, code)}).Check(context.Background())
		if (err == nil) != healthy {
			t.Errorf("status %d: error %v, want healthy=%v", code, err, healthy)
		}
	}
	custom := &health.HTTP{URL: srv.URL + "/404", Healthy: func(s int) bool { return s == 404 }}
	if err := custom.Check(context.Background()); err != nil {
		t.Errorf("custom Healthy: %v", err)
	}
}

func TestGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := grpchealth.NewServer()
	hs.SetServingStatus("db", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(ln)
	defer srv.Stop()
	good := &health.GRPC{Addr: ln.Addr().String()}
	bad := &health.GRPC{Addr: ln.Addr().String(), Service: "db"}
	defer good.Close()
	defer bad.Close()
	adaptertest.TestChecker(t, good, bad)
	if err := bad.Check(context.Background()); !errors.Is(err, health.ErrUnhealthy) {
		t.Errorf("NOT_SERVING: %v, want ErrUnhealthy", err)
	}
	hs.SetServingStatus("db", healthpb.HealthCheckResponse_SERVING)
	if err := bad.Check(context.Background()); err != nil {
		t.Errorf("after SERVING: %v", err)
	}
}

func startRedis(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed (apt-get install redis-server): skipping the redis PING checks")
	}
	addr := closedAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir()}, args...)...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Kill)
		cmd.Wait()
	})
	adaptertest.Eventually(t, 30*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "redis-server accepting on "+addr)
	return addr
}

func TestRedisPing(t *testing.T) {
	addr := startRedis(t)
	adaptertest.TestChecker(t, &health.RedisPing{Addr: addr}, &health.RedisPing{Addr: closedAddr(t)})
	authed := startRedis(t, "--requirepass", "pw")
	if err := (&health.RedisPing{Addr: authed}).Check(context.Background()); !errors.Is(err, health.ErrUnhealthy) {
		t.Errorf("PING without AUTH: %v, want ErrUnhealthy (NOAUTH)", err)
	}
	if err := (&health.RedisPing{Addr: authed, Password: "pw"}).Check(context.Background()); err != nil {
		t.Errorf("PING with AUTH: %v", err)
	}
	if err := (&health.RedisPing{Addr: authed, Password: "wrong"}).Check(context.Background()); !errors.Is(err, health.ErrUnhealthy) {
		t.Errorf("wrong password: %v, want ErrUnhealthy", err)
	}
}

// flaky fails while fail is set.
type flaky struct{ fail atomic.Bool }

func (f *flaky) Check(context.Context) error {
	if f.fail.Load() {
		return errors.New("down")
	}
	return nil
}

func TestThresholds(t *testing.T) {
	f := &flaky{}
	reg := prometheus.NewRegistry()
	a, err := health.New([]health.Spec{{Name: "f", Probe: lifecycle.Readyz, Checker: f, FailureThreshold: 3, SuccessThreshold: 2}},
		health.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	steps := []struct {
		fail    bool
		healthy bool
	}{
		{false, false}, // 1 of 2 successes: still unhealthy (starts unhealthy)
		{false, true},  // 2 successes
		{true, true},   // 1 failure of 3
		{true, true},   // 2
		{true, false},  // 3: unhealthy
		{false, false}, // 1 success of 2
		{true, false},  // reset
		{false, false},
		{false, true},
	}
	for i, s := range steps {
		f.fail.Store(s.fail)
		err := a.Check(ctx, "f")
		if (err == nil) != s.healthy {
			t.Fatalf("step %d (fail=%v): error %v, want healthy=%v", i, s.fail, err, s.healthy)
		}
	}
	v, _ := adaptertest.Values(reg)
	if v[`podblocks_adapter_health_up{check="f"}`] != 1 || v[`podblocks_adapter_health_checks_total{check="f",result="failure"}`] != 4 {
		t.Errorf("metrics %v", v)
	}
	_, header, rows := a.Statusz()
	if len(rows) != 1 || len(rows[0]) != len(header) || rows[0][2] != "healthy" {
		t.Errorf("Statusz rows %v", rows)
	}
}

func TestNewErrors(t *testing.T) {
	ok := &health.TCP{Addr: "127.0.0.1:1"}
	for name, specs := range map[string][]health.Spec{
		"no name":    {{Probe: lifecycle.Readyz, Checker: ok}},
		"no checker": {{Name: "a", Probe: lifecycle.Readyz}},
		"bad probe":  {{Name: "a", Probe: lifecycle.Probe(42), Checker: ok}},
		"negative":   {{Name: "a", Probe: lifecycle.Readyz, Checker: ok, FailureThreshold: -1}},
		"twice":      {{Name: "a", Probe: lifecycle.Readyz, Checker: ok}, {Name: "a", Probe: lifecycle.Readyz, Checker: ok}},
		"two probes": {{Name: "a", Probe: lifecycle.Livez, Checker: ok}, {Name: "a", Probe: lifecycle.Readyz, Checker: ok}},
		"not UTF-8":  {{Name: "a\xff", Probe: lifecycle.Readyz, Checker: ok}}, // panicked in WithLabelValues
	} {
		if _, err := health.New(specs); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestParseConfig(t *testing.T) {
	specs, err := health.ParseConfig([]byte(`
checks:
- {name: db, exec: [sh, -c, "exit 0"], interval: 5s, timeout: 2s, failure_threshold: 3}
- {name: cache, probe: livez, redis: "127.0.0.1:6379"}
- {name: web, probe: startupz, http: "http://127.0.0.1:8080/healthz"}
- {name: port, tcp: "127.0.0.1:9000"}
- {name: api, grpc: "127.0.0.1:50051", grpc_service: x}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 5 || specs[0].Interval != 5*time.Second || specs[0].FailureThreshold != 3 ||
		specs[1].Probe != lifecycle.Livez || specs[2].Probe != lifecycle.Startupz || specs[3].Probe != lifecycle.Readyz {
		t.Errorf("specs %+v", specs)
	}
	for _, bad := range []string{
		"checks: []",
		"checks:\n- {name: a}",
		"checks:\n- {name: a, tcp: x, http: y}",
		"checks:\n- {name: a, tcp: x, probe: sometimes}",
		"checks:\n- {name: a, tcp: x, bogus: 1}",
		"checks:\n- {tcp: x}", // New would refuse these: refused with the config's context
		"checks:\n- {name: a, tcp: x}\n- {name: a, http: y}",
		"checks:\n- {name: a, tcp: x, timeout: -1s}",
	} {
		if _, err := health.ParseConfig([]byte(bad)); err == nil {
			t.Errorf("ParseConfig(%q) succeeded", bad)
		}
	}
}

// serve registers a with a ready lifecycle hook server, stopped at the test's end; get requests
// one of its paths (code 0 and the error if the request failed).
func serve(t *testing.T, a *health.Adapter) (get func(path string) (int, string)) {
	t.Helper()
	srv, err := lifecycle.NewServer(lifecycle.WithAddr("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Register(srv); err != nil {
		t.Fatal(err)
	}
	lifecycletest.StartReady(t, srv, 30*time.Second)
	srv.SetState(lifecycle.StateReady)
	return func(path string) (int, string) {
		resp, err := http.Get("http://" + srv.Addr() + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
}

// TestHookServer plugs the adapter into a real lifecycle hook server and probes it over HTTP.
func TestHookServer(t *testing.T) {
	up := &flaky{}
	tcpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcpLn.Close()
	a, err := health.New([]health.Spec{
		{Name: "app", Probe: lifecycle.Readyz, Checker: up},
		{Name: "port", Probe: lifecycle.Livez, Checker: &health.TCP{Addr: tcpLn.Addr().String()}, Interval: 20 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	get := serve(t, a)
	status := func(path string) int {
		code, _ := get(path)
		return code
	}
	adaptertest.Eventually(t, 30*time.Second, func() bool { return status("/readyz") == 200 && status("/livez") == 200 },
		"/readyz and /livez 200")
	up.fail.Store(true)
	if got := status("/readyz"); got != 500 {
		t.Errorf("/readyz with the app down = %d, want 500", got)
	}
	if got := status("/readyz/app"); got != 500 {
		t.Errorf("/readyz/app = %d, want 500", got)
	}
	tcpLn.Close()
	adaptertest.Eventually(t, 30*time.Second, func() bool { return status("/livez") == 500 }, "/livez fails once the port closed")
}

// within runs f and returns its error, or fails the test if f has not returned after d (then
// calls unblock, which must make f return, and waits for it, so no goroutine is left behind).
func within(t *testing.T, d time.Duration, what string, unblock func(), f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Errorf("%s: still running after %v", what, d)
		unblock()
		return <-done
	}
}

// TestTimeoutCountsAsFailure: a Checker still running at its Timeout (here one that ignores its
// ctx) is one failure against the threshold, not an answer of its own; Close waits for it.
func TestTimeoutCountsAsFailure(t *testing.T) {
	var hang atomic.Bool
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	a, err := health.New([]health.Spec{{Name: "h", Probe: lifecycle.Readyz, Timeout: 50 * time.Millisecond, FailureThreshold: 2,
		Checker: health.CheckerFunc(func(context.Context) error {
			if hang.Load() {
				<-release
			}
			return nil
		})}})
	if err != nil {
		t.Fatal(err)
	}
	check := func() error {
		return within(t, 10*time.Second, "Check of a hung Checker with Timeout 50ms", unblock,
			func() error { return a.Check(context.Background(), "h") })
	}
	if err := check(); err != nil {
		t.Fatalf("first check: %v", err)
	}
	hang.Store(true)
	if err := check(); err != nil {
		t.Errorf("first timeout of threshold 2: %v, want still healthy", err)
	}
	if err := check(); err == nil || !strings.Contains(err.Error(), "timed out after 50ms") {
		t.Errorf("second timeout: %v, want unhealthy, timed out after 50ms", err)
	}
	unblock()
	if err := a.Close(); err != nil {
		t.Error(err)
	}
}

// TestCloseBounded: Close does not wait forever for a Checker that ignores its ctx: it gives up
// after the check's Timeout plus 1.5s and says so.
func TestCloseBounded(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	a, err := health.New([]health.Spec{{Name: "deaf", Probe: lifecycle.Livez, Timeout: 50 * time.Millisecond,
		Checker: health.CheckerFunc(func(context.Context) error {
			<-release // ignores its ctx
			return nil
		})}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Check(context.Background(), "deaf"); err == nil || !strings.Contains(err.Error(), "timed out after 50ms") {
		t.Fatalf("hung check: %v, want timed out after 50ms", err)
	}
	start := time.Now()
	err = within(t, 10*time.Second, "Close with a Checker that ignores its ctx", unblock, a.Close)
	if took := time.Since(start); took < 1500*time.Millisecond {
		t.Errorf("Close returned after %v, before its bound (Timeout + 1.5s)", took)
	}
	if err == nil || !strings.Contains(err.Error(), "ignores its ctx") {
		t.Errorf("Close = %v, want an error naming the Checker still running", err)
	}
}

// TestHookServerHangCountsAgainstThreshold: through the hook server, a Checker that hangs past
// its Timeout is one failure against the threshold: the hook server's own bound of the check does
// not cut the adapter's verdict off.
func TestHookServerHangCountsAgainstThreshold(t *testing.T) {
	var hang atomic.Bool
	release := make(chan struct{})
	defer close(release)
	a, err := health.New([]health.Spec{{Name: "h", Probe: lifecycle.Readyz, Timeout: 100 * time.Millisecond, FailureThreshold: 3,
		Checker: health.CheckerFunc(func(context.Context) error {
			if hang.Load() {
				<-release // ignores its ctx
			}
			return nil
		})}})
	if err != nil {
		t.Fatal(err)
	}
	get := serve(t, a)
	adaptertest.Eventually(t, 30*time.Second, func() bool { code, _ := get("/readyz/h"); return code == 200 }, "/readyz/h 200")
	hang.Store(true)
	for i := 1; i <= 3; i++ {
		code, body := get("/readyz/h")
		want := 200
		if i == 3 {
			want = 500
		}
		if code != want || (i == 3 && !strings.Contains(body, "health: h: timed out after 100ms")) {
			t.Errorf("hang %d of threshold 3: /readyz/h = %d %q, want %d", i, code, body, want)
		}
	}
}

// TestHTTPProbeConventions: like the kubelet's httpGet probe, an HTTP check does not verify TLS
// certificates, follows up to 10 redirects on the same host (the final status decides), and takes
// a redirect to another host as the answer.
func TestHTTPProbeConventions(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/hops/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("n"))
		if n == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/hops/%d", n-1), http.StatusFound)
	})
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {})
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable) // never asked: the redirect to it is the answer
	}))
	defer other.Close()
	_, port, _ := net.SplitHostPort(other.Listener.Addr().String())
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://localhost:"+port+"/", http.StatusFound)
	})
	srv := httptest.NewTLSServer(mux) // a self-signed certificate nobody trusts
	defer srv.Close()
	for _, tc := range []struct {
		path    string
		healthy bool
	}{
		{"/ok", true},
		{"/hops/3", false}, // followed to the 503
		{"/hops/11", false},
		{"/elsewhere", true},
	} {
		err := (&health.HTTP{URL: srv.URL + tc.path}).Check(context.Background())
		if (err == nil) != tc.healthy {
			t.Errorf("GET %s: error %v, want healthy=%v", tc.path, err, tc.healthy)
		}
	}
	if err := (&health.HTTP{URL: srv.URL + "/hops/11"}).Check(context.Background()); err == nil ||
		!strings.Contains(err.Error(), "stopped after 10 redirects") {
		t.Errorf("11 redirects: %v, want stopped after 10 redirects", err)
	}
}

// TestHTTPProbeHeaders: an HTTP check's headers work as the kubelet's httpGet httpHeaders: a
// Host header sets the request's host, and User-Agent and Accept get defaults only when unset.
func TestHTTPProbeHeaders(t *testing.T) {
	type seen struct{ host, ua, accept string }
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, hasAccept := r.Header["Accept"]
		accept := r.Header.Get("Accept")
		if !hasAccept {
			accept = "(none)"
		}
		got <- seen{r.Host, r.UserAgent(), accept}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, tc := range []struct {
		header http.Header
		want   seen
	}{
		{nil, seen{host, "podblocks-health/1", "*/*"}},
		{http.Header{"Host": {"app.example"}, "User-Agent": {"mine/2"}, "Accept": {"application/json"}},
			seen{"app.example", "mine/2", "application/json"}},
		{http.Header{"user-agent": {"lower/1"}}, seen{host, "lower/1", "*/*"}}, // not canonical: still the user's
		{http.Header{"Accept": {""}}, seen{host, "podblocks-health/1", "(none)"}},
	} {
		if err := (&health.HTTP{URL: srv.URL, Header: tc.header}).Check(context.Background()); err != nil {
			t.Errorf("header %v: %v", tc.header, err)
			continue
		}
		if s := <-got; s != tc.want {
			t.Errorf("header %v: server saw %+v, want %+v", tc.header, s, tc.want)
		}
	}
}

// TestCloseWithoutChecks: an Adapter without checks closes at once, with no error.
func TestCloseWithoutChecks(t *testing.T) {
	for range 200 {
		a, err := health.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatalf("Close of an Adapter without checks: %v", err)
		}
	}
}

// FuzzParseConfig: a config is refused, or gives one spec per check that New accepts.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"checks:\n- {name: db, exec: [sh, -c, \"exit 0\"], interval: 5s, timeout: 2s, failure_threshold: 3}\n- {name: cache, probe: livez, redis: \"127.0.0.1:6379\"}\n",
		"checks:\n- {name: web, probe: startupz, http: \"http://127.0.0.1:8080/healthz\"}\n- {name: api, grpc: \"127.0.0.1:50051\", grpc_service: x}\n",
		"checks: []", "checks:\n- {name: a}", "checks:\n- {name: a, tcp: x, http: y}", "checks:\n- {tcp: x}",
		"checks:\n- {name: a, tcp: x}\n- {name: a, tcp: y}", "checks:\n- {name: a, tcp: x, timeout: -1s}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, y string) {
		specs, err := health.ParseConfig([]byte(y))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "health: config: ") {
				t.Errorf("ParseConfig error %q does not say it is the config's", err)
			}
			return
		}
		a, err := health.New(specs)
		if err != nil {
			t.Fatalf("ParseConfig accepted %q, New refused its specs: %v", y, err)
		}
		a.Close()
	})
}
