package lifecycle_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podblocks/podblocks/lifecycle"
	"github.com/podblocks/podblocks/lifecycletest"
)

// startServer runs a hook server on a loopback port for the test and returns its base URL.
func startServer(t *testing.T, srv *lifecycle.Server) string {
	t.Helper()
	lifecycletest.Start(t, srv)
	lifecycletest.WaitReady(t, srv, 5*time.Second)
	return "http://" + srv.Addr()
}

func newServer(t *testing.T, opts ...lifecycle.Option) *lifecycle.Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := lifecycle.NewServer(append([]lifecycle.Option{lifecycle.WithListener(ln)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestProbes(t *testing.T) {
	srv := newServer(t)
	dbDown := errors.New("connection refused")
	must(t, srv.AddCheck(lifecycle.Livez, lifecycle.Check{Name: "ping", Func: func(context.Context) error { return nil }}))
	must(t, srv.AddCheck(lifecycle.Readyz, lifecycle.Check{Name: "db", Func: func(context.Context) error { return dbDown }}))
	must(t, srv.AddCheck(lifecycle.Readyz, lifecycle.Check{Name: "cache", Func: func(context.Context) error { return nil }}))
	must(t, srv.AddCheck(lifecycle.Readyz, lifecycle.Check{Name: "slow", Timeout: 20 * time.Millisecond, Func: func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}}))
	base := startServer(t, srv)
	srv.SetState(lifecycle.StateReady)

	tests := []struct {
		path     string
		wantCode int
		wantBody string
	}{
		{"/livez", 200, "ok"},
		{"/livez?verbose", 200, "[+]ping ok\nlivez check passed\n"},
		{"/readyz?exclude=db&exclude=slow", 200, "ok"},
		{"/readyz?verbose&exclude=db,slow", 200, "[+]lifecycle ok\n[+]db excluded: ok\n[+]cache ok\n[+]slow excluded: ok\nreadyz check passed\n"},
		{"/readyz?verbose&exclude=slow", 500, "[+]lifecycle ok\n[-]db failed: connection refused\n[+]cache ok\n[+]slow excluded: ok\nreadyz check failed\n"},
		{"/readyz?exclude=db&exclude=slow&exclude=nosuch&verbose", 200, "[+]lifecycle ok\n[+]db excluded: ok\n[+]cache ok\n[+]slow excluded: ok\nwarn: some health checks cannot be excluded: no matches for nosuch\nreadyz check passed\n"},
		{"/readyz/cache", 200, "ok"},
		{"/readyz/db", 500, "internal server error: connection refused\n"},
		{"/readyz/slow", 500, "internal server error: timed out after 20ms\n"},
		{"/readyz/nosuch", 404, "no readyz check named \"nosuch\"\n"},
		{"/healthz/ping", 200, "ok"},
		{"/startupz", 200, "ok"},
	}
	for _, tc := range tests {
		code, body := do(t, "GET", base+tc.path, "")
		if code != tc.wantCode || body != tc.wantBody {
			t.Errorf("GET %s = %d %q, want %d %q", tc.path, code, body, tc.wantCode, tc.wantBody)
		}
	}
	if code, _ := do(t, "POST", base+"/readyz", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz = %d, want 405", code)
	}
}

func TestReadinessFollowsState(t *testing.T) {
	srv := newServer(t)
	base := startServer(t, srv)
	for _, tc := range []struct {
		state            lifecycle.State
		readyz, startupz int
	}{
		{lifecycle.StateStarting, 500, 500},
		{lifecycle.StateReady, 200, 200},
		{lifecycle.StateDraining, 500, 200},
	} {
		srv.SetState(tc.state)
		if code, body := do(t, "GET", base+"/readyz", ""); code != tc.readyz {
			t.Errorf("%v: /readyz = %d %q, want %d", tc.state, code, body, tc.readyz)
		}
		if code, _ := do(t, "GET", base+"/startupz", ""); code != tc.startupz {
			t.Errorf("%v: /startupz = %d, want %d", tc.state, code, tc.startupz)
		}
		if code, _ := do(t, "GET", base+"/livez", ""); code != 200 {
			t.Errorf("%v: /livez = %d, want 200", tc.state, code)
		}
	}
}

func TestPeriodicCheck(t *testing.T) {
	srv := newServer(t)
	calls := make(chan struct{}, 100)
	must(t, srv.AddCheck(lifecycle.Livez, lifecycle.Check{Name: "bg", Interval: 10 * time.Millisecond, Func: func(context.Context) error {
		calls <- struct{}{}
		return nil
	}}))
	base := startServer(t, srv)
	for range 3 {
		<-calls // runs in the background without any probe request
	}
	if code, body := do(t, "GET", base+"/livez/bg", ""); code != 200 {
		t.Errorf("/livez/bg = %d %q", code, body)
	}
}

func TestLogz(t *testing.T) {
	level := zap.NewAtomicLevelAt(zap.InfoLevel)
	srv := newServer(t, lifecycle.WithLevel(level))
	base := startServer(t, srv)
	if code, body := do(t, "GET", base+"/logz", ""); code != 200 || !strings.Contains(body, `"info"`) {
		t.Errorf("GET /logz = %d %q", code, body)
	}
	if code, body := do(t, "PUT", base+"/logz", `{"level":"debug"}`); code != 200 {
		t.Errorf("PUT /logz = %d %q", code, body)
	}
	if level.Level() != zap.DebugLevel {
		t.Errorf("level = %v, want debug", level.Level())
	}
	code, body := do(t, "PUT", base+"/logz", `{"level":"loud"}`)
	if code != http.StatusBadRequest || !strings.Contains(body, "loud") {
		t.Errorf("PUT /logz bad level = %d %q, want 400 naming the level", code, body)
	}
	if code, _ := do(t, "DELETE", base+"/logz", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE /logz = %d, want 405", code)
	}
	if level.Level() != zap.DebugLevel {
		t.Errorf("level after bad input = %v, want debug", level.Level())
	}
	// The server goes on after bad input.
	if code, _ := do(t, "GET", base+"/livez", ""); code != 200 {
		t.Errorf("/livez after bad input = %d", code)
	}
}

type dbConfig struct {
	Host     string        `json:"host"`
	Password string        `json:"password"`
	Key      string        `json:"key" podblocks:"secret"`
	Timeout  time.Duration `json:"timeout"`
	Extra    map[string]string
}

func TestConfigzRedacts(t *testing.T) {
	srv := newServer(t)
	srv.AddConfig("db", &dbConfig{Host: "db:5432", Password: "hunter2", Key: "k", Timeout: 3 * time.Second,
		Extra: map[string]string{"auth_token": "abc", "region": "eu"}})
	base := startServer(t, srv)
	code, body := do(t, "GET", base+"/configz", "")
	if code != 200 {
		t.Fatalf("/configz = %d", code)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"db": map[string]any{
		"host": "db:5432", "password": lifecycle.Redacted, "key": lifecycle.Redacted, "timeout": "3s",
		"Extra": map[string]any{"auth_token": lifecycle.Redacted, "region": "eu"},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("/configz (-want +got):\n%s", diff)
	}
	for _, secret := range []string{"hunter2", "abc"} {
		if strings.Contains(body, secret) {
			t.Errorf("/configz leaks %q", secret)
		}
	}
}

func TestMetricsAndPprof(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "app_things_total", Help: "Things."})
	reg.MustRegister(c)
	c.Add(3)
	srv := newServer(t, lifecycle.WithGatherer(reg))
	base := startServer(t, srv)
	code, body := do(t, "GET", base+"/metrics", "")
	if code != 200 || !strings.Contains(body, "app_things_total 3") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics = %d, missing the app's or the Go collector's metrics:\n%.300s", code, body)
	}
	if code, _ := do(t, "GET", base+"/debug/pprof/", ""); code != 404 {
		t.Errorf("pprof is opt-in: /debug/pprof/ = %d, want 404", code)
	}

	srv2 := newServer(t, lifecycle.WithPprof(true))
	base2 := startServer(t, srv2)
	if code, _ := do(t, "GET", base2+"/debug/pprof/goroutine?debug=1", ""); code != 200 {
		t.Errorf("pprof enabled: /debug/pprof/goroutine = %d, want 200", code)
	}
}

func TestHooksWithoutHandlers(t *testing.T) {
	srv := newServer(t)
	base := startServer(t, srv)
	for _, p := range []string{"/prestop", "/quitquitquit"} {
		if code, _ := do(t, "POST", base+p, ""); code != 404 {
			t.Errorf("POST %s without a handler = %d, want 404", p, code)
		}
	}
}

type providerFunc func() (string, []string, [][]string)

func (f providerFunc) Statusz() (string, []string, [][]string) { return f() }

func TestStatusz(t *testing.T) {
	srv := newServer(t, lifecycle.WithVersion("v1.2.3"))
	srv.SetPriority("critical")
	srv.AddStatus(providerFunc(func() (string, []string, [][]string) {
		return "elector", []string{"key", "value"}, [][]string{{"leader", "<b>pod-0</b>"}, {"api_token", "s3cr3t"}, {"fencing token", "42"}}
	}))
	srv.AddStatus(providerFunc(func() (string, []string, [][]string) { panic("broken provider") }))
	must(t, srv.AddCheck(lifecycle.Readyz, lifecycle.Check{Name: "db", Func: func(context.Context) error { return nil }}))
	base := startServer(t, srv)
	srv.SetState(lifecycle.StateReady)
	do(t, "GET", base+"/readyz", "") // gives the db check a last result

	code, html := do(t, "GET", base+"/statusz", "")
	if code != 200 {
		t.Fatalf("/statusz = %d", code)
	}
	for _, want := range []string{"v1.2.3", "critical", "elector", "&lt;b&gt;pod-0&lt;/b&gt;", lifecycle.Redacted, "(provider failed)", `href="/metrics"`, ">db<", "<td>42</td>"} {
		if !strings.Contains(html, want) {
			t.Errorf("/statusz lacks %q", want)
		}
	}
	for _, leak := range []string{"<b>pod-0</b>", "s3cr3t"} {
		if strings.Contains(html, leak) {
			t.Errorf("/statusz renders %q unescaped or unredacted", leak)
		}
	}
	code, js := do(t, "GET", base+"/statusz?format=json", "")
	var page struct {
		State    string
		Sections []struct{ Title string }
	}
	if err := json.Unmarshal([]byte(js), &page); err != nil || code != 200 {
		t.Fatalf("/statusz?format=json = %d, %v", code, err)
	}
	if page.State != "ready" || len(page.Sections) != 2 || page.Sections[0].Title != "elector" {
		t.Errorf("json page = %+v", page)
	}
	if code, _ := do(t, "GET", base+"/statusz?format=xml", ""); code != 400 {
		t.Errorf("/statusz?format=xml = %d, want 400", code)
	}
}

func TestAddCheckValidates(t *testing.T) {
	srv := newServer(t)
	ok := func(context.Context) error { return nil }
	for _, c := range []lifecycle.Check{{Name: "", Func: ok}, {Name: "a/b", Func: ok}, {Name: "x"}} {
		if err := srv.AddCheck(lifecycle.Readyz, c); err == nil {
			t.Errorf("AddCheck(%q) = nil, want an error", c.Name)
		}
	}
	for _, p := range []lifecycle.Probe{lifecycle.Livez, lifecycle.Readyz, lifecycle.Startupz} {
		for _, name := range []string{"lifecycle", "started"} { // the built-ins' names
			if err := srv.AddCheck(p, lifecycle.Check{Name: name, Func: ok}); err == nil || !strings.Contains(err.Error(), "reserved") {
				t.Errorf("AddCheck(%v, %q) = %v, want an error saying the name is reserved", p, name, err)
			}
		}
	}
	must(t, srv.AddCheck(lifecycle.Readyz, lifecycle.Check{Name: "x", Func: ok}))
	if err := srv.AddCheck(lifecycle.Readyz, lifecycle.Check{Name: "x", Func: ok}); err == nil {
		t.Error("duplicate AddCheck = nil")
	}
	if _, err := lifecycle.NewServer(lifecycle.WithAddr("nonsense")); err == nil {
		t.Error("NewServer with a bad address = nil error")
	}
	srv.Run(canceled()) // never started listening: closes its listener and returns
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// podblocks_lifecycle_state shows the state from the start: 1 (starting) before anything is set.
func TestStateGaugeFollowsState(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv, err := lifecycle.NewServer(lifecycle.WithRegisterer(reg))
	must(t, err)
	state := func() float64 {
		t.Helper()
		mfs, err := reg.Gather()
		must(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "podblocks_lifecycle_state" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("podblocks_lifecycle_state not registered")
		return 0
	}
	if got := state(); got != float64(lifecycle.StateStarting) {
		t.Errorf("state gauge of a new server = %v, want %d (starting)", got, lifecycle.StateStarting)
	}
	srv.SetState(lifecycle.StateReady)
	if got := state(); got != float64(lifecycle.StateReady) {
		t.Errorf("state gauge after SetState(ready) = %v, want %d", got, lifecycle.StateReady)
	}
}
