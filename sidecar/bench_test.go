package sidecar

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// countingSink encodes like WriterSink into io.Discard and counts lines.
type countingSink struct {
	w *WriterSink
	n atomic.Int64
}

func (c *countingSink) rawOutput() bool { return c.w.rawOutput() }

func (c *countingSink) Write(ctx context.Context, recs []Record) error {
	c.n.Add(int64(recordLines(recs)))
	return c.w.Write(ctx, recs)
}

func benchFile(b *testing.B, lines int) (dir string, size int64) {
	b.Helper()
	dir = b.TempDir()
	var buf bytes.Buffer
	for i := range lines {
		fmt.Fprintf(&buf, "2026-11-25T23:00:00.000Z INFO request handled path=/api/v1/items/%d status=200 dur=%dms\n", i, i%97)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.log"), buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	return dir, int64(buf.Len())
}

// BenchmarkTailer measures the Tailer shipping a 100k-line file to a JSON-lines and to a raw sink,
// against the baseline of reading the same file and splitting it into lines (what any follower must
// do).
func BenchmarkTailer(b *testing.B) {
	const lines = 100_000
	dir, size := benchFile(b, lines)
	b.Run("baseline-read-split", func(b *testing.B) {
		b.SetBytes(size)
		b.ReportAllocs()
		buf := make([]byte, 256<<10)
		for b.Loop() {
			f, err := os.Open(filepath.Join(dir, "app.log"))
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for {
				k, err := f.Read(buf)
				n += bytes.Count(buf[:k], []byte{'\n'})
				_, _ = io.Discard.Write(buf[:k])
				if err != nil {
					break
				}
			}
			f.Close()
			if n != lines {
				b.Fatalf("%d lines", n)
			}
		}
	})
	for _, format := range []struct {
		name string
		f    Format
	}{{"tailer-json", FormatJSON}, {"tailer-raw", FormatRaw}} {
		b.Run(format.name, func(b *testing.B) { benchTailer(b, dir, size, lines, format.f) })
	}
}

// benchTailer runs a Tailer over the file in dir until it shipped all its lines to a sink writing
// format into io.Discard.
func benchTailer(b *testing.B, dir string, size int64, lines int64, format Format) {
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		sink := &countingSink{w: NewWriterSink(io.Discard, WithFormat(format))}
		tl, err := NewTailer([]string{filepath.Join(dir, "*.log")}, sink, WithPollInterval(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- tl.Run(ctx) }()
		for sink.n.Load() < lines {
			time.Sleep(100 * time.Microsecond)
		}
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	r := Record{File: "/var/log/app/app.log", Line: []byte("2026-11-25T23:00:00.000Z INFO request handled path=/api/v1/items/12345 status=200 dur=42ms"), Offset: 123456}
	b.SetBytes(int64(len(r.Line)))
	b.ReportAllocs()
	buf := make([]byte, 0, 256)
	for b.Loop() {
		buf = AppendJSON(buf[:0], r)
	}
}

// BenchmarkTrimZeros measures trimZeros against the byte-at-a-time loop it replaced, on a read
// ending in a few NUL bytes and on one full of them.
func BenchmarkTrimZeros(b *testing.B) {
	for _, zeros := range []int{16, 256 << 10} {
		buf := make([]byte, 256<<10)
		for i := range buf[:len(buf)-zeros] {
			buf[i] = 'x'
		}
		b.Run(fmt.Sprintf("%d/baseline-loop", zeros), func(b *testing.B) {
			b.SetBytes(int64(zeros))
			for b.Loop() {
				end := len(buf)
				for end > 0 && buf[end-1] == 0 {
					end--
				}
				if end != len(buf)-zeros {
					b.Fatal(end)
				}
			}
		})
		b.Run(fmt.Sprintf("%d/trimZeros", zeros), func(b *testing.B) {
			b.SetBytes(int64(zeros))
			for b.Loop() {
				if n := len(trimZeros(buf)); n != len(buf)-zeros {
					b.Fatal(n)
				}
			}
		})
	}
}
