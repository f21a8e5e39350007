package lifecycletest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/lifecycle"
	"github.com/podblocks/podblocks/lifecycletest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStopReportsContractViolations(t *testing.T) {
	ok := lifecycletest.Start(t, lifecycle.Func(func(ctx context.Context) error { <-ctx.Done(); return nil }))
	if err := ok.Stop(time.Second); err != nil {
		t.Errorf("well-behaved component: %v", err)
	}

	bad := lifecycletest.Start(t, lifecycle.Func(func(ctx context.Context) error { <-ctx.Done(); return errors.New("boom") }))
	if err := bad.Stop(time.Second); err == nil {
		t.Error("component returning an error after cancel: Stop returned nil")
	}

	release := make(chan struct{})
	stuck := lifecycletest.Start(t, lifecycle.Func(func(ctx context.Context) error { <-release; return nil }))
	if err := stuck.Stop(50 * time.Millisecond); err == nil {
		t.Error("component ignoring cancel: Stop returned nil")
	}
	close(release)
	<-stuck.Done()
}

func TestFakeScaler(t *testing.T) {
	var f lifecycletest.FakeScaler
	ctx := context.Background()
	for _, n := range []int32{3, 1} {
		if err := f.Scale(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Scale(ctx, -1); err == nil {
		t.Error("Scale(-1) returned nil")
	}
	if got, _ := f.Replicas(ctx); got != 1 {
		t.Errorf("Replicas = %d, want 1", got)
	}
	if diff := cmp.Diff([]int32{3, 1}, f.Calls()); diff != "" {
		t.Errorf("Calls (-want +got):\n%s", diff)
	}
	f.Err = errors.New("api down")
	if _, err := f.Replicas(ctx); err == nil {
		t.Error("Replicas with Err set returned nil")
	}
}
