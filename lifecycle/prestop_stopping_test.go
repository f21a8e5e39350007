package lifecycle_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/lifecycle"
)

// A preStop hook that arrives while the App is stopping without a drain (a component failed) answers
// 200 at once: the container is on its way out, and holding the hook until the hook server stops
// only delays the kubelet. Here a slow component holds the stop for 4 s; the hook server (stopped
// last) would cut the hook off only then.
func TestPreStopWhileStoppingAnswersAtOnce(t *testing.T) {
	hooksLn, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	app, err := lifecycle.NewApp(lifecycle.WithListener(hooksLn), lifecycle.WithSignals(),
		lifecycle.WithPropagationDelay(5*time.Second), lifecycle.WithGracePeriod(30*time.Second),
		lifecycle.WithSafetyMargin(10*time.Second))
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
	done := runApp(t, app)
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
}

// runApp runs app and waits until it is ready; Run's result comes on the channel.
func runApp(t *testing.T, app *lifecycle.App) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- app.Run(context.Background()) }()
	select {
	case <-app.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("app not ready")
	}
	return done
}
