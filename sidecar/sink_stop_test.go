package sidecar

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// stopBound is how long Run may take to return once its ctx ended while its sink waits for a reader
// that stalled: the final read's budget (finalReadTimeout) and a second.
const stopBound = finalReadTimeout + time.Second

// A WriterSink on a writer with write deadlines (a net.Conn here; an *os.File the runtime polls)
// whose reader stopped reading: once the ctx of the Write that started a batch ends, the batch's
// write is cut off, so Flush (which the Tailer calls before it commits, also when Run stops) returns
// with an error instead of waiting forever. The rest is kept: a later Write with a live ctx writes it
// first, so the reader gets every line once.
func TestWriterSinkCutsOffStalledWriterWhenCtxEnds(t *testing.T) {
	for _, f := range []Format{FormatJSON, FormatRaw} {
		c1, c2 := net.Pipe() // synchronous: a write waits for the reader
		s := NewWriterSink(c1, WithFormat(f))
		var recs []Record
		var want strings.Builder
		for i := range 1000 {
			r := Record{File: "f", Line: fmt.Appendf(nil, "line %04d %s", i, strings.Repeat("x", 60)), Offset: int64(i * 70)}
			recs = append(recs, r)
			if f == FormatRaw {
				want.WriteString(string(r.Line) + "\n")
			} else {
				want.Write(AppendJSON(nil, r))
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		if err := s.Write(ctx, recs[:500]); err != nil {
			t.Fatalf("Write = %v", err)
		}
		got := make([]byte, 1000) // the reader takes 1000 bytes, then stalls
		if _, err := io.ReadFull(c2, got); err != nil {
			t.Fatal(err)
		}
		cancel()
		flushed := make(chan error, 1)
		go func() { flushed <- s.Flush() }()
		select {
		case err := <-flushed:
			if err == nil {
				t.Errorf("format %d: Flush = nil with the reader stalled, want the write's error", f)
			}
		case <-time.After(stopBound):
			read := make(chan []byte, 1)
			go func() { b, _ := io.ReadAll(c2); read <- b }()
			<-flushed
			c1.Close()
			<-read
			t.Fatalf("format %d: Flush did not return within %v of the Write's ctx ending while nobody read", f, stopBound)
		}
		// The reader is back: the rest of the first batch, then the second.
		read := make(chan []byte, 1)
		go func() { b, _ := io.ReadAll(c2); read <- b }()
		if err := s.Write(context.Background(), recs[500:]); err != nil {
			t.Fatalf("format %d: Write = %v", f, err)
		}
		if err := s.Flush(); err != nil {
			t.Fatalf("format %d: Flush = %v", f, err)
		}
		c1.Close()
		if diff := cmp.Diff(want.String(), string(got)+string(<-read)); diff != "" {
			t.Errorf("format %d: the reader got (-want +got):\n%s", f, diff)
		}
	}
}
