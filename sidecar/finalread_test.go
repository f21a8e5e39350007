package sidecar

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// slowSink takes 2ms per batch (a sink slower than the writer) until fast is set.
type slowSink struct {
	fast  atomic.Bool
	mu    sync.Mutex
	lines int
}

func (s *slowSink) Write(_ context.Context, recs []Record) error {
	if !s.fast.Load() {
		time.Sleep(2 * time.Millisecond)
	}
	s.mu.Lock()
	s.lines += len(recs)
	s.mu.Unlock()
	return nil
}

func (s *slowSink) n() int { s.mu.Lock(); defer s.mu.Unlock(); return s.lines }

// Run returns once its ctx ended (DESIGN: the Component contract), also while a file deleted while
// open keeps growing faster than the sink takes its lines: the final read of a deleted file stops at
// the size the file had when it started, and after finalReadTimeout, and logs what it left unread.
func TestRunReturnsWhileDeletedFileKeepsGrowing(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app.log")
	if err := os.WriteFile(app, []byte("first\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(app, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	sink := &slowSink{}
	core, logs := observer.New(zapcore.WarnLevel)
	tl, err := NewTailer([]string{filepath.Join(dir, "*.log")}, sink, WithPollInterval(20*time.Millisecond),
		WithMaxLineBytes(1024), WithReadChunkBytes(2048), WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	<-tl.Ready()
	for sink.n() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := os.Remove(app); err != nil {
		t.Fatal(err)
	}
	// The writer appends ~4 MB/s (less under load), the sink takes at most ~1 MB/s (2 KiB per 2ms).
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		chunk := []byte(strings.Repeat(strings.Repeat("x", 99)+"\n", 40))
		for written := 0; !stop.Load() && written < 64<<20; written += len(chunk) {
			_, _ = w.Write(chunk)
			time.Sleep(time.Millisecond)
		}
	}()
	defer func() { stop.Store(true); wg.Wait() }()
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		t.Logf("Run returned %v after its ctx ended; shipped %d lines", time.Since(start), sink.n())
	case <-time.After(10 * time.Second):
		stop.Store(true)
		sink.fast.Store(true) // let the old loop drain quickly
		<-done
		t.Fatalf("Run did not return within 10s after its ctx ended (returned after %v, once the writer stopped); shipped %d lines",
			time.Since(start), sink.n())
	}
	unread := logs.FilterMessageSnippet("not read to its end").All()
	if len(unread) != 1 {
		t.Fatalf("%d logs of the unread rest, want 1: %v", len(unread), logs.All())
	}
	f := unread[0].ContextMap()
	if off, size, ok := f["offset"].(int64), f["size"].(int64), f["file"] == app; !ok || off <= 0 || off >= size {
		t.Errorf("unread rest logged as %v, want the file, an offset and a larger size", f)
	}
}
