package sidecartest

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/sidecar"
)

// Shipped is a record as a sink delivered it.
type Shipped struct {
	File string
	Line string
}

// TestSink is the conformance suite for sidecar.Sink implementations. newSink returns a fresh sink
// and a function returning everything it delivered so far, in order. For a sidecar.Flusher, the
// suite calls Flush before it looks at what was delivered.
func TestSink(t *testing.T, newSink func(t *testing.T) (sink sidecar.Sink, delivered func() []Shipped)) {
	newSink = flushing(newSink)
	t.Run("DeliversInOrder", func(t *testing.T) {
		sink, delivered := newSink(t)
		var want []Shipped
		for batch := range 3 {
			var recs []sidecar.Record
			for i := range 50 {
				s := Shipped{File: fmt.Sprintf("/logs/app-%d.log", batch), Line: fmt.Sprintf("batch %d line %d", batch, i)}
				want = append(want, s)
				recs = append(recs, sidecar.Record{File: s.File, Line: []byte(s.Line), Offset: int64(i)})
			}
			if err := sink.Write(context.Background(), recs); err != nil {
				t.Fatal(err)
			}
		}
		if diff := cmp.Diff(want, delivered()); diff != "" {
			t.Errorf("delivered (-want +got):\n%s", diff)
		}
	})
	t.Run("EscapesAnyText", func(t *testing.T) {
		sink, delivered := newSink(t)
		lines := []string{`quote " backslash \ `, "tab\tcontrol\x01", "ünïcødé 日本 \u2028", "", "{\"json\":true}"}
		var recs []sidecar.Record
		var want []Shipped
		for _, l := range lines {
			recs = append(recs, sidecar.Record{File: `/odd "dir"/a.log`, Line: []byte(l)})
			want = append(want, Shipped{File: `/odd "dir"/a.log`, Line: l})
		}
		if err := sink.Write(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, delivered()); diff != "" {
			t.Errorf("delivered (-want +got):\n%s", diff)
		}
	})
	t.Run("DoesNotKeepLineBuffers", func(t *testing.T) {
		sink, delivered := newSink(t)
		buf := []byte("original")
		if err := sink.Write(context.Background(), []sidecar.Record{{File: "/a", Line: buf}}); err != nil {
			t.Fatal(err)
		}
		copy(buf, "OVERWRIT") // the Tailer reuses its buffer after Write returns
		if diff := cmp.Diff([]Shipped{{File: "/a", Line: "original"}}, delivered()); diff != "" {
			t.Errorf("delivered (-want +got):\n%s", diff)
		}
	})
	t.Run("EmptyBatch", func(t *testing.T) {
		sink, delivered := newSink(t)
		if err := sink.Write(context.Background(), nil); err != nil {
			t.Fatalf("Write(nil) = %v", err)
		}
		if got := delivered(); len(got) != 0 {
			t.Errorf("delivered %v for an empty batch", got)
		}
	})
}

// flushing wraps newSink so that delivered flushes a Flusher first.
func flushing(newSink func(t *testing.T) (sidecar.Sink, func() []Shipped)) func(t *testing.T) (sidecar.Sink, func() []Shipped) {
	return func(t *testing.T) (sidecar.Sink, func() []Shipped) {
		sink, delivered := newSink(t)
		f, ok := sink.(sidecar.Flusher)
		if !ok {
			return sink, delivered
		}
		return sink, func() []Shipped {
			if err := f.Flush(); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			return delivered()
		}
	}
}
