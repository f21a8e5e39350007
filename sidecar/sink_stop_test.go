package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
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

// A write deadline the user set on the net.Conn they handed WriterSink stays set: the sink touches
// the deadline only to cut off a write whose ctx ended, and lifts only a cut it made itself. It
// used to clear the deadline at the start of every write, so a write on the conn after the sink's
// waited for a reader without bound instead of failing at the user's deadline.
func TestWriterSinkKeepsUsersWriteDeadline(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	deadline := time.Now().Add(2 * time.Second) // the sink's small write is done long before
	if err := c1.SetWriteDeadline(deadline); err != nil {
		t.Fatal(err)
	}
	s := NewWriterSink(c1, WithFormat(FormatRaw))
	read := make(chan []byte, 1)
	go func() {
		b := make([]byte, len("one\ntwo\n"))
		_, _ = io.ReadFull(c2, b)
		read <- b
	}()
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Write(ctx, []Record{{File: "f", Line: []byte("one")}}); err != nil {
		t.Fatalf("Write = %v", err)
	}
	if err := s.Write(context.Background(), []Record{{File: "f", Line: []byte("two")}}); err != nil {
		t.Fatalf("Write = %v", err)
	}
	if err := s.Flush(); err != nil {
		t.Fatalf("Flush = %v", err)
	}
	cancel() // after the writes: nothing to cut off
	if got := string(<-read); got != "one\ntwo\n" {
		t.Fatalf("the reader got %q, want %q", got, "one\ntwo\n")
	}
	// Nobody reads now: a write on the conn ends at the user's deadline.
	wrote := make(chan error, 1)
	go func() {
		_, err := c1.Write([]byte("three\n"))
		wrote <- err
	}()
	select {
	case err := <-wrote:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("a write after the deadline = %v, want %v", err, os.ErrDeadlineExceeded)
		}
		if early := time.Until(deadline); early > 0 {
			t.Errorf("the write failed %v before the deadline", early)
		}
	case <-time.After(time.Until(deadline) + stopBound):
		c2.Close()
		<-wrote
		t.Fatalf("a write with nobody reading did not end within %v of the user's write deadline: the sink cleared it", stopBound)
	}
}
