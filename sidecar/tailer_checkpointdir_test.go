package sidecar

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/internal/await"
)

// A checkpoint in a directory that does not exist yet (a fresh emptyDir volume): Run creates the
// directory and commits into it before Ready. It used to warn on every commit that the file could
// not be created and never write it, so each restart shipped everything again.
func TestTailerCreatesTheCheckpointDirectory(t *testing.T) {
	e := newTailEnv(t)
	e.state = filepath.Join(e.dir, ".logship", "sub", "state.json")
	appendFile(t, filepath.Join(e.logs, "app.log"), numbered("a", 0, 3)...)
	stop := runTailer(t, e.tailer(t))
	e.waitLines(t, 3)
	stop()
	st, found, err := loadCheckpoint(e.state)
	if err != nil || !found || len(st.Files) != 1 || st.Files[0].Offset != int64(3*len("a-0000\n")) {
		t.Errorf("checkpoint: %+v, found %v, %v; want app.log at its end", st, found, err)
	}
	fi, err := os.Stat(filepath.Dir(e.state))
	if err != nil || fi.Mode().Perm()&0o700 != 0o700 {
		t.Errorf("checkpoint directory: %v, %v", fi, err)
	}
}

// A checkpoint that cannot be written at all fails Run at start, before Ready and before anything is
// shipped: running on would ship everything again at each restart. Here the temporary file each
// commit writes first is a directory, or the checkpoint's directory would be under a regular file.
// It used to be a warning on every commit while Run went on.
func TestTailerUnwritableCheckpointFailsAtStart(t *testing.T) {
	t.Run("tmp is a directory", func(t *testing.T) {
		e := newTailEnv(t)
		if err := os.Mkdir(e.state+".tmp", 0o755); err != nil {
			t.Fatal(err)
		}
		testUnwritableCheckpoint(t, e)
	})
	t.Run("directory under a file", func(t *testing.T) {
		e := newTailEnv(t)
		e.state = filepath.Join(e.out+".file", "state.json")
		if err := os.WriteFile(e.out+".file", nil, 0o644); err != nil {
			t.Fatal(err)
		}
		testUnwritableCheckpoint(t, e)
	})
}

func testUnwritableCheckpoint(t *testing.T, e *tailEnv) {
	appendFile(t, filepath.Join(e.logs, "app.log"), numbered("a", 0, 3)...)
	tl := e.tailer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "checkpoint") {
			t.Errorf("Run: %v; want an error naming the checkpoint", err)
		}
	case <-tl.Ready():
		cancel()
		err := <-done
		t.Fatalf("Ready with a checkpoint that cannot be written; Run returned %v", err)
	}
	if got := readShipped(t, e.out); len(got) != 0 {
		t.Errorf("shipped %d lines before failing", len(got))
	}
}

// A checkpoint that stops being writable while the Tailer runs is an error in the log, when it
// starts failing, and counted in podblocks_sidecar_tailer_checkpoint_errors_total on every commit it
// fails; the Tailer goes on shipping, and says so once it is written again. It used to be a warning
// on each commit, several times a second, and no metric.
func TestTailerCheckpointFailingLaterIsAnErrorAndCounted(t *testing.T) {
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	appendFile(t, app, numbered("a", 0, 3)...)
	core, logs := observer.New(zapcore.InfoLevel)
	reg := prometheus.NewRegistry()
	tl := e.tailer(t, WithLogger(zap.New(core)), WithRegisterer(reg))
	stop := runTailer(t, tl)
	e.waitLines(t, 3)
	// The temporary file a commit writes first is a directory now: every commit fails. A commit
	// may be writing that file at this moment (it renames it over the state when done): try again
	// until the name is free.
	tmp := e.state + ".tmp"
	await.True(t, "the commit's temporary file made a directory", 10*time.Second, func() bool {
		err := os.Mkdir(tmp, 0o755)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			t.Fatal(err)
		}
		return err == nil
	})
	appendFile(t, app, numbered("b", 0, 3)...)
	e.waitLines(t, 6)
	await.True(t, "failed commits counted", 30*time.Second, func() bool { return counterValue(tl.m.ckptErrs) >= 2 })
	if n := logs.FilterLevelExact(zapcore.ErrorLevel).FilterMessageSnippet("commit checkpoint").Len(); n != 1 {
		t.Errorf("%d error logs for the failing checkpoint; want 1 (then one a minute)", n)
	}
	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	appendFile(t, app, "c-0000")
	e.waitLines(t, 7)
	await.True(t, "checkpoint written again", 30*time.Second, func() bool {
		return logs.FilterMessage("checkpoint written again").Len() == 1
	})
	stop()
	st, _, err := loadCheckpoint(e.state)
	if err != nil || len(st.Files) != 1 || st.Files[0].Offset != int64(7*len("a-0000\n")) {
		t.Errorf("checkpoint: %+v, %v; want app.log at its end", st, err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		found = found || mf.GetName() == "podblocks_sidecar_tailer_checkpoint_errors_total"
	}
	if !found {
		t.Error("podblocks_sidecar_tailer_checkpoint_errors_total not registered")
	}
}
