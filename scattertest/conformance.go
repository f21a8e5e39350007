package scattertest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podblocks/podblocks/scatter"
)

// NewLeafFunc builds the Leaf under test around fn: the leaf's Call must end up calling fn (once,
// or once per replica tried) and return its answer or an error when fn fails.
type NewLeafFunc func(t *testing.T, fn func(ctx context.Context, req string) (string, error)) scatter.Leaf[string, string]

// TestLeaf is the conformance suite for scatter.Leaf implementations: answers pass through,
// errors come back as errors, a cancelled context ends a call promptly, and concurrent calls each
// get their own answer.
func TestLeaf(t *testing.T, newLeaf NewLeafFunc) {
	t.Run("answers", func(t *testing.T) {
		l := newLeaf(t, func(_ context.Context, req string) (string, error) { return strings.ToUpper(req), nil })
		got, err := l.Call(t.Context(), "hello")
		if err != nil || got != "HELLO" {
			t.Fatalf("Call = %q, %v; want HELLO, nil", got, err)
		}
	})
	t.Run("errors", func(t *testing.T) {
		l := newLeaf(t, func(context.Context, string) (string, error) { return "", errors.New("no such shard") })
		if _, err := l.Call(t.Context(), "x"); err == nil {
			t.Fatal("Call returned no error for a failing leaf")
		}
	})
	t.Run("cancel", func(t *testing.T) {
		l := newLeaf(t, func(ctx context.Context, _ string) (string, error) {
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(time.Minute):
				return "late", nil
			}
		})
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := l.Call(ctx, "x")
		if err == nil {
			t.Fatal("Call returned no error after its context ended")
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("Call took %v after a 50ms deadline", took)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		l := newLeaf(t, func(_ context.Context, req string) (string, error) { return req + "!", nil })
		var wg sync.WaitGroup
		errs := make([]error, 32)
		for i := range errs {
			wg.Go(func() {
				want := fmt.Sprint(i)
				got, err := l.Call(t.Context(), want)
				if err == nil && got != want+"!" {
					err = fmt.Errorf("call %d got %q", i, got)
				}
				errs[i] = err
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	})
}
