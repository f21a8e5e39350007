package sidecar

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// A file deleted while open and read to its end before the Tailer stopped lost nothing: the restart
// does not warn that its lines are lost (it used to, for every such entry). One left short of its
// size is a warning with the offset and the size, logged once; an entry without the size (written
// by an older version) says lines "may" be lost.
func TestTailerRestartWarnsOfDeletedFileOnlyWhenLinesWereLeft(t *testing.T) {
	e := newTailEnv(t)
	_, _, w, stop, _ := e.deletedWithUnreadLines(t)
	stop()
	e.sink.Close()
	fi, err := w.Stat()
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := loadCheckpoint(e.state)
	if err != nil || len(st.Files) != 1 || !st.Files[0].Unlinked || st.Files[0].Offset != fi.Size() {
		t.Fatalf("checkpoint %+v, %v; want the deleted file read to its end", st, err)
	}
	read := st.Files[0]

	for _, tc := range []struct {
		name  string
		entry func(checkpointEntry) checkpointEntry
		want  string // the warning; "" for none
	}{
		{"read to its end", func(e checkpointEntry) checkpointEntry { return e }, ""},
		{"lines left", func(e checkpointEntry) checkpointEntry { e.Offset -= 10; return e },
			"checkpointed file was deleted while open and cannot be reopened: lines after the offset are lost"},
		{"size unknown", func(e checkpointEntry) checkpointEntry { e.Size = 0; return e },
			"checkpointed file was deleted while open and cannot be reopened: lines written to it after the offset may be lost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := writeCheckpoint(e.state, checkpointState{Version: 1, Files: []checkpointEntry{tc.entry(read)}}); err != nil {
				t.Fatal(err)
			}
			core, logs := observer.New(zapcore.WarnLevel)
			stop := runTailer(t, e.tailer(t, WithLogger(zap.New(core))))
			stop()
			e.sink.Close()
			got := logs.FilterMessageSnippet("deleted while open").All()
			switch {
			case tc.want == "" && len(got) != 0:
				t.Errorf("warned %q; want no warning", got[0].Message)
			case tc.want != "" && (len(got) != 1 || got[0].Message != tc.want):
				t.Errorf("warnings %v; want one: %q", got, tc.want)
			}
		})
	}
}

// Only the commit of a Tailer that stops knows a deleted file's size for good: its final read took
// the file up to that size. A commit while it runs sees a size the writer may pass right after it;
// when the process is then killed (SIGKILL, OOM), the lines appended since are lost, and the restart
// must warn that they may be (it logged at Debug that the file had been read to its end).
func TestTailerRestartAfterAKillWarnsOfDeletedFile(t *testing.T) {
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	w, err := os.OpenFile(app, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	fmt.Fprintln(w, "before")
	tl := e.tailer(t)
	rs, step := steppedTailer(t, tl)
	step()
	if err := os.Remove(app); err != nil {
		t.Fatal(err)
	}
	step() // sees the deletion and reads on from the descriptor
	// A commit while running, at the deleted file's end; then the writer appends, and the process
	// is killed: no final read, no final commit.
	rs.dirty = true
	tl.commit(rs)
	fmt.Fprintln(w, "after")
	for _, tf := range rs.files {
		tf.close()
	}
	e.sink.Close()
	st, _, err := loadCheckpoint(e.state)
	if err != nil || len(st.Files) != 1 || !st.Files[0].Unlinked || st.Files[0].Offset != int64(len("before\n")) {
		t.Fatalf("checkpoint %+v, %v; want the deleted file at its end when committed", st, err)
	}
	core, logs := observer.New(zapcore.WarnLevel)
	stop := runTailer(t, e.tailer(t, WithLogger(zap.New(core))))
	stop()
	const want = "checkpointed file was deleted while open and cannot be reopened: lines written to it after the offset may be lost"
	if got := logs.FilterMessageSnippet("deleted while open").All(); len(got) != 1 || got[0].Message != want {
		t.Errorf("warnings %v; want one: %q", got, want)
	}
}
