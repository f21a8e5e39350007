package lifecycle_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/lifecycle"
)

// A preStop hook that arrives while the App is stopping without a drain (a component failed) answers
// 200 at once: the container is on its way out, and holding the hook until the hook server stops
// only delays the kubelet. Here a slow component holds the stop for 4 s; the hook server (stopped
// last) would cut the hook off only then. The hook starts no drain: that stop is not one, and
// drains_total stays at zero.
func TestPreStopWhileStoppingAnswersAtOnce(t *testing.T) {
	hooksLn, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	reg := prometheus.NewRegistry()
	app, err := lifecycle.NewApp(lifecycle.WithListener(hooksLn), lifecycle.WithSignals(),
		lifecycle.WithRegisterer(reg), lifecycle.WithPropagationDelay(5*time.Second),
		lifecycle.WithGracePeriod(30*time.Second), lifecycle.WithSafetyMargin(10*time.Second))
	must(t, err)
	const hold = 4 * time.Second
	must(t, app.Add("slow-to-stop", lifecycle.Func(func(ctx context.Context) error {
		<-ctx.Done()
		time.Sleep(hold) // flushing
		return nil
	})))
	boom := errors.New("lost the database")
	fail := make(chan struct{})
	must(t, app.Add("fails", lifecycle.Func(func(ctx context.Context) error {
		select {
		case <-fail:
			return boom
		case <-ctx.Done():
			return nil
		}
	})))
	done := runApp(t, context.Background(), app)
	hooksURL := "http://" + hooksLn.Addr().String()
	close(fail)
	await.True(t, "/readyz failing once the component failed", 5*time.Second, func() bool {
		code, _ := do(t, "GET", hooksURL+"/readyz", "")
		return code != http.StatusOK
	})

	start := time.Now()
	code, body := do(t, "POST", hooksURL+"/prestop", "")
	took := time.Since(start)
	if code != http.StatusOK || !strings.Contains(body, "stopping") {
		t.Errorf("POST /prestop while stopping = %d %q, want 200 stopping", code, body)
	}
	if took > hold/2 {
		t.Errorf("POST /prestop while stopping answered after %v, want well before the %v stop ends", took, hold)
	}
	select {
	case err := <-done:
		if !errors.Is(err, boom) {
			t.Errorf("Run = %v, want the component's error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("app did not stop")
	}
	mfs, err := reg.Gather()
	must(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "podblocks_lifecycle_drains_total" {
			if n := mf.GetMetric()[0].GetCounter().GetValue(); n != 0 {
				t.Errorf("podblocks_lifecycle_drains_total after a preStop hook while stopping = %v, want 0", n)
			}
			return
		}
	}
	t.Error("podblocks_lifecycle_drains_total not registered")
}

// runApp runs app with ctx and waits until it is ready; Run's result comes on the channel.
func runApp(t *testing.T, ctx context.Context, app *lifecycle.App) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	select {
	case <-app.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("app not ready")
	}
	return done
}

// Ctx ending while the drain waits for a connection that never sent its request (a client's spare
// keep-alive connection, which http.Server.Shutdown counts as busy for 5 s) stops the App at once,
// as ctx ending does outside a drain: Run does not wait for the drain's deadline.
func TestCtxEndingDuringDrainStopsAtOnce(t *testing.T) {
	app, appLn := newServingApp(t, http.NotFoundHandler())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := runApp(t, ctx, app)
	spare, err := net.Dial("tcp", appLn.Addr().String())
	must(t, err)
	defer spare.Close()
	await.True(t, "the spare connection accepted", 5*time.Second, func() bool {
		code, _ := do(t, "GET", "http://"+appLn.Addr().String()+"/", "")
		return code == http.StatusNotFound
	})
	app.Drain()
	await.True(t, "the app server shutting down", 5*time.Second, refuses(appLn.Addr().String()))
	cancel()
	// The old code waited 5 s, for Shutdown to give up on the spare connection (the drain's
	// deadline is 9 s away), and then failed with a stop timeout.
	awaitNil(t, done, "ctx ended", time.Now(), 2*time.Second)
}

// refuses returns a condition: addr refuses connections.
func refuses(addr string) func() bool {
	return func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return true
		}
		c.Close()
		return false
	}
}

// awaitNil waits for Run's result on done and checks that it is nil and came within d of start,
// when what happened.
func awaitNil(t *testing.T, done <-chan error, what string, start time.Time, d time.Duration) {
	t.Helper()
	select {
	case err := <-done:
		if took := time.Since(start); took > d {
			t.Errorf("Run returned %v after %s, want at once", took, what)
		}
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("Run did not return after %s", what)
	}
}

// newServingApp returns an App (no propagation delay, a 10 s grace period, a 1 s safety margin)
// whose component "app" serves handler on the listener it also returns.
func newServingApp(t *testing.T, handler http.Handler) (*lifecycle.App, net.Listener) {
	t.Helper()
	hooksLn, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	app, err := lifecycle.NewApp(lifecycle.WithListener(hooksLn), lifecycle.WithSignals(),
		lifecycle.WithPropagationDelay(0), lifecycle.WithGracePeriod(10*time.Second),
		lifecycle.WithSafetyMargin(time.Second))
	must(t, err)
	hs, err := lifecycle.NewHTTPServerListener(&http.Server{Handler: handler}, appLn)
	must(t, err)
	must(t, app.Add("app", hs))
	return app, appLn
}
