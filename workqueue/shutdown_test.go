package workqueue_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/workqueue"
)

// TestShutdownDrains is client-go's ShutDownWithDrain: Shutdown refuses new work at once and returns
// when the last lease handed out has ended.
func TestShutdownDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		q, _ := workqueue.NewMemory()
		q.Add(ctx, []byte("a"), workqueue.AddOptions{})
		q.Add(ctx, []byte("b"), workqueue.AddOptions{})
		it, _ := q.Lease(ctx)
		done := make(chan error, 1)
		go func() { done <- q.Shutdown(ctx) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned %v while a lease was out", err)
		default:
		}
		if _, err := q.Add(ctx, []byte("c"), workqueue.AddOptions{}); !errors.Is(err, workqueue.ErrClosed) {
			t.Errorf("Add during Shutdown: %v, want ErrClosed", err)
		}
		if _, err := q.Lease(ctx); !errors.Is(err, workqueue.ErrClosed) {
			t.Errorf("Lease during Shutdown: %v, want ErrClosed", err)
		}
		time.Sleep(time.Second) // the holder works on
		if err := q.Ack(ctx, it.Lease); err != nil {
			t.Fatalf("Ack during Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
}

func TestShutdownStopsAtCtxAndExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		q, _ := workqueue.NewMemory(workqueue.WithLeaseDuration(10 * time.Second))
		q.Add(ctx, []byte("a"), workqueue.AddOptions{})
		q.Lease(ctx) // never acked
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if err := q.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown with a 1s ctx: %v, want DeadlineExceeded", err)
		}
		start := time.Now()
		if err := q.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if el := time.Since(start); el != 9*time.Second {
			t.Errorf("Shutdown waited %v for the lease to expire, want 9s", el)
		}
	})
}

func TestMemoryStatusz(t *testing.T) {
	q := mustMemory(t)
	ctx := context.Background()
	q.Add(ctx, []byte("a"), workqueue.AddOptions{})
	q.Add(ctx, []byte("b"), workqueue.AddOptions{Delay: time.Hour})
	q.Lease(ctx)
	q.Add(ctx, []byte("c"), workqueue.AddOptions{})
	title, header, rows := q.Statusz()
	if title == "" || len(header) != 2 {
		t.Errorf("Statusz title %q header %v", title, header)
	}
	want := [][]string{{"ready", "1"}, {"delayed", "1"}, {"leased", "1"}, {"dead", "0"}}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("Statusz rows (-want +got):\n%s", diff)
	}
}
