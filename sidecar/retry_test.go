package sidecar

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/internal/await"
)

func TestDefaultBackoff(t *testing.T) {
	var got []time.Duration
	for a := 0; a <= 10; a++ {
		got = append(got, DefaultBackoff(a))
	}
	want := []time.Duration{100 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
		800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond,
		10 * time.Second, 10 * time.Second, 10 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestRetryWaitsTheBackoffAndStopsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		calls := 0
		err := retry(context.Background(), func(context.Context) error {
			if calls++; calls < 4 {
				return errors.New("not yet")
			}
			return nil
		}, DefaultBackoff, func(int, error) {})
		if err != nil || calls != 4 {
			t.Fatalf("retry = %v after %d calls", err, calls)
		}
		if d := time.Since(start); d != 700*time.Millisecond { // 100 + 200 + 400
			t.Errorf("retried for %v, want 700ms of backoff", d)
		}

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err = retry(ctx, func(context.Context) error { return errors.New("never") }, DefaultBackoff, func(int, error) {})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("retry with a deadline = %v", err)
		}
	})
}

// TestHTTPSinkOutageHoldsOffsets: while the HTTP server refuses, nothing is committed past what it
// accepted; once it accepts, every line arrives once.
func TestHTTPSinkOutageHoldsOffsets(t *testing.T) {
	var up atomic.Bool
	var refused atomic.Int32
	var mu = make(chan struct{}, 1)
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			refused.Add(1)
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		mu <- struct{}{}
		got = append(got, strings.Split(strings.TrimSpace(readAll(r)), "\n")...)
		<-mu
	}))
	defer srv.Close()
	e := newTailEnv(t)
	appendFile(t, filepath.Join(e.logs, "app.log"), "a", "b", "c")
	sink, err := NewHTTPSink(srv.URL, WithHTTPClient(srv.Client()), WithBackoff(func(int) time.Duration { return 5 * time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	tl, err := NewTailer([]string{filepath.Join(e.logs, "*.log")}, sink, WithCheckpoint(e.state),
		WithPollInterval(10*time.Millisecond), WithBackoff(func(int) time.Duration { return 5 * time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	stop := runTailer(t, tl)
	await.True(t, "refused deliveries", 20*time.Second, func() bool { return refused.Load() >= 3 })
	st, _, err := loadCheckpoint(e.state)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range st.Files {
		if f.Offset != 0 {
			t.Errorf("checkpoint offset %d for %s while the sink is down, want 0", f.Offset, f.Path)
		}
	}
	up.Store(true)
	await.True(t, "3 lines posted", 20*time.Second, func() bool {
		mu <- struct{}{}
		defer func() { <-mu }()
		return len(got) >= 3
	})
	// The server has the lines before the sink has its answer: stopping now could cancel the
	// request, leaving them undelivered for the Tailer (offset 0, sent again after a restart).
	await.True(t, "3 lines delivered", 20*time.Second, func() bool { return counterValue(tl.m.lines) >= 3 })
	stop()
	mu <- struct{}{}
	defer func() { <-mu }()
	if len(got) != 3 {
		t.Errorf("posted %d records, want 3: %v", len(got), got)
	}
	st, _, _ = loadCheckpoint(e.state)
	if len(st.Files) != 1 || st.Files[0].Offset != 6 {
		t.Errorf("final checkpoint %+v, want offset 6", st.Files)
	}
}

func readAll(r *http.Request) string {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := r.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

func TestMetricsRegisterOnceWithPrefix(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 { // a second Tailer on the same registry shares the collectors
		if _, err := NewTailer([]string{"/x/*.log"}, NewWriterSink(os.Stdout), WithRegisterer(reg)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewReloader([]string{"/x"}, func(context.Context) error { return nil }, WithRegisterer(reg)); err != nil {
		t.Fatal(err)
	}
	newTailerMetrics(reg).lines.Inc()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) == 0 {
		t.Fatal("nothing registered")
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "podblocks_sidecar_") {
			t.Errorf("metric %s lacks the podblocks_sidecar_ prefix", mf.GetName())
		}
	}
}

// A failed sync is not retried (the next interval tries again), so the Syncer has no retries
// counter: one that nothing counts would read 0 for ever.
func TestSyncerRegistersNoRetriesCounter(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewSyncer(t.TempDir(), &HTTPArchiveSource{URL: "http://127.0.0.1:1/x.tar"}, WithRegisterer(reg)); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	if !slices.Contains(names, "podblocks_sidecar_syncer_syncs_total") {
		t.Fatalf("no syncs counter among %q", names)
	}
	if slices.Contains(names, "podblocks_sidecar_syncer_syncs_retries_total") {
		t.Errorf("a syncs retries counter is registered: %q", names)
	}
}
