package scatter_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/scatter"
)

// TestCoverageQuorum: WithCoverage(f) needs ceil(f*n) shards, exactly for fractions that floating
// point gets slightly wrong, and at least one for any f above 0.
func TestCoverageQuorum(t *testing.T) {
	tests := []struct {
		f    float64
		n    int
		want string
	}{
		{1e-10, 4, "1"},
		{0.01, 3, "1"},
		{0.5, 2, "1"},
		{1.0 / 3, 3, "1"},
		{2.0 / 3, 3, "2"},
		{0.7, 10, "7"},
		{0.71, 10, "8"},
		{1, 5, "5"},
	}
	for _, tt := range tests {
		bs := make([]behaviour, tt.n)
		f, err := scatter.New(leavesOf(&probe{}, bs...), sum, scatter.WithCoverage(tt.f))
		if err != nil {
			t.Fatal(err)
		}
		_, _, rows := f.Statusz()
		if rows[1][0] != "quorum" || rows[1][1] != tt.want {
			t.Errorf("WithCoverage(%v) of %d: Statusz row %q, want quorum %s", tt.f, tt.n, rows[1], tt.want)
		}
	}
	synctest.Test(t, func(t *testing.T) {
		f, err := scatter.New(leavesOf(&probe{}, behaviour{d: ms(2)}, behaviour{d: ms(1)}), sum, scatter.WithCoverage(1e-10))
		if err != nil {
			t.Fatal(err)
		}
		res, err := f.Do(t.Context(), 3)
		f.Wait()
		if err != nil || res.Answered != 1 || res.Why.String() != "quorum" {
			t.Errorf("WithCoverage(1e-10): answered %d, why %v, err %v; want 1 answer, quorum", res.Answered, res.Why, err)
		}
	})
}

// TestHTTPLeafLargeErrorKeepsStatus: a non-200 answer longer than MaxBody is still an
// *HTTPStatusError with its code, and its message is the body's first bytes.
func TestHTTPLeafLargeErrorKeepsStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(strings.Repeat("overloaded ", 1000)))
	}))
	defer srv.Close()
	l := &scatter.HTTPLeaf[addReq, addResp]{URL: srv.URL, Client: srv.Client(), MaxBody: 64}
	_, err := l.Call(t.Context(), addReq{N: 1})
	var se *scatter.HTTPStatusError
	if !errors.As(err, &se) {
		t.Fatalf("Call = %v, want an *HTTPStatusError", err)
	}
	want := &scatter.HTTPStatusError{Code: http.StatusServiceUnavailable, Message: strings.Repeat("overloaded ", 1000)[:64]}
	if diff := cmp.Diff(want, se); diff != "" {
		t.Fatalf("error (-want +got):\n%s", diff)
	}
}

// TestAbandonedSlotAttempts: a shard called but still running when the deadline ends the fan-out
// (its leaf ignores ctx) reports 1 attempt; a shard never called, 0.
func TestAbandonedSlotAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ok, hang := behaviour{d: ms(2)}, behaviour{d: time.Hour, hang: true}
		f, err := scatter.New(leavesOf(&probe{}, ok, hang, hang, ok, ok), sum,
			scatter.WithConcurrency(2), scatter.WithTimeout(ms(3)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		res, _ := f.Do(ctx, 3)
		f.Wait()
		type slot struct {
			Status   string
			Attempts int
		}
		var got []slot
		for _, s := range res.Slots {
			got = append(got, slot{s.Status.String(), s.Attempts})
		}
		want := []slot{{"ok", 1}, {"timeout", 1}, {"timeout", 1}, {"skipped", 0}, {"skipped", 0}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("slots (-want +got):\n%s", diff)
		}
	})
}
