package lifecycle_test

import (
	"context"
	"testing"
	"time"

	"github.com/podblocks/podblocks/lifecycle"
)

// TestSmallMarginStuckCheck: with an App's safety margin under 100 ms (its hook server's stop
// timeout), a check Func that ignores its context does not turn a clean stop into ErrStopTimeout:
// the hook server waits for it half the margin, as documented.
func TestSmallMarginStuckCheck(t *testing.T) {
	app, err := lifecycle.NewApp(lifecycle.WithAddr("127.0.0.1:0"), lifecycle.WithGracePeriod(time.Second),
		lifecycle.WithSafetyMargin(50*time.Millisecond), lifecycle.WithPropagationDelay(0), lifecycle.WithSignals())
	if err != nil {
		t.Fatal(err)
	}
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	defer close(release)
	if err := app.Hooks().AddCheck(lifecycle.Readyz, lifecycle.Check{Name: "stuck", Interval: time.Hour, Timeout: 5 * time.Second,
		Func: func(context.Context) error {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release // ignores its context
			return nil
		}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	<-entered
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("App.Run = %v, want nil (margin 50ms, a check stuck)", err)
	}
}
