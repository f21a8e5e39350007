package sidecar

import (
	"bytes"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
)

// cappedWriter takes the first limit bytes written to it, then fails every write, as a writer
// whose reader went away does.
type cappedWriter struct {
	mu    sync.Mutex
	limit int
	got   []byte
	fails int
}

func (w *cappedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := min(len(b), w.limit-len(w.got))
	w.got = append(w.got, b[:n]...)
	if n < len(b) {
		w.fails++
		return n, errors.New("capped")
	}
	return n, nil
}

func (w *cappedWriter) state() ([]byte, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.got), w.fails
}

// A WriterSink whose writer took part of a batch and failed: the Tailer commits the offset of the
// first line the writer did not take whole, neither the last commit before (a restart would ship
// again what the writer took) nor one past it. commit used to write no checkpoint at all when the
// sink's Flush failed, leaving it at the last one that succeeded (here none: offset 0).
func TestTailerCommitsWhatAFailedWriterTook(t *testing.T) {
	for _, format := range []Format{FormatJSON, FormatRaw} {
		t.Run(map[Format]string{FormatJSON: "json", FormatRaw: "raw"}[format], func(t *testing.T) {
			e := newTailEnv(t)
			app := filepath.Join(e.logs, "app.log")
			appendFile(t, app, numbered("line", 0, 400)...)
			w := &cappedWriter{limit: 2000 + 7} // inside a line in either format
			tl, err := NewTailer([]string{filepath.Join(e.logs, "*.log")}, NewWriterSink(w, WithFormat(format)),
				WithCheckpoint(e.state), WithPollInterval(20*time.Millisecond), WithCommitInterval(time.Hour),
				WithBackoff(func(int) time.Duration { return 5 * time.Millisecond }))
			if err != nil {
				t.Fatal(err)
			}
			stop := runTailer(t, tl)
			await.True(t, "the writer to fail", 30*time.Second, func() bool { _, fails := w.state(); return fails >= 1 })
			stop()
			got, _ := w.state()
			whole := bytes.Count(got, []byte("\n"))
			st, _, err := loadCheckpoint(e.state)
			if err != nil || len(st.Files) != 1 {
				t.Fatalf("checkpoint %+v, %v", st, err)
			}
			if want := int64(whole * len("line-0000\n")); st.Files[0].Offset != want {
				t.Errorf("checkpoint offset %d; the writer took %d whole lines (up to offset %d)", st.Files[0].Offset, whole, want)
			}
		})
	}
}
