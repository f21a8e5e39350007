package sidecar

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv("SIDECAR_TAILER_CHILD") == "1" {
		os.Exit(tailerChild())
	}
	if os.Getenv("SIDECAR_SUPERVISOR_CHILD") == "1" {
		os.Exit(supervisorChild())
	}
	if os.Getenv("SIDECAR_SYNCER_CHILD") == "1" {
		os.Exit(syncerChild())
	}
	goleak.VerifyTestMain(m)
}

// tailerChild runs a Tailer as a separate process for the SIGKILL tests: it follows
// $TAIL_GLOB into the file sink $TAIL_OUT with the checkpoint $TAIL_STATE until SIGTERM.
func tailerChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	sink, err := OpenFileSink(os.Getenv("TAIL_OUT"))
	if err != nil {
		return 2
	}
	defer sink.Close()
	log := zap.NewNop()
	if p := os.Getenv("TAIL_LOG"); p != "" {
		cfg := zap.NewDevelopmentConfig()
		cfg.OutputPaths = []string{p}
		if l, err := cfg.Build(); err == nil {
			log = l.With(zap.Int("pid", os.Getpid()))
		}
	}
	t, err := NewTailer([]string{os.Getenv("TAIL_GLOB")}, sink, WithCheckpoint(os.Getenv("TAIL_STATE")), WithLogger(log),
		WithPollInterval(50*1e6), WithCommitInterval(20*1e6), WithCloseIdle(1e9))
	if err != nil {
		return 2
	}
	if err := t.Run(ctx); err != nil {
		return 1
	}
	return 0
}

// supervisorChild runs a Supervisor as a separate process for the parent-death test, until
// SIGTERM: its one child is `sh -c 'echo $$ > $SUP_PIDFILE; exec sleep 60'`.
func supervisorChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	pidfile := os.Getenv("SUP_PIDFILE")
	s, err := NewSupervisor([]Child{{Path: "sh", Args: []string{"-c", `echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 60`, pidfile}}},
		WithBackoff(func(int) time.Duration { return time.Hour }))
	if err != nil {
		return 2
	}
	if err := s.Run(ctx); err != nil {
		return 1
	}
	return 0
}

// fileSource publishes one file, site.txt, with the content version.
type fileSource string

func (f fileSource) Fetch(_ context.Context, have, dir string) (string, error) {
	if have == string(f) {
		return have, nil
	}
	return string(f), os.WriteFile(filepath.Join(dir, "site.txt"), []byte(f), 0o644)
}

// syncerChild runs a Syncer as a separate process for the root lock tests, until SIGTERM: it
// publishes fileSource("child") under $SYNC_ROOT, as the link "child".
func syncerChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	s, err := NewSyncer(os.Getenv("SYNC_ROOT"), fileSource("child"), WithInterval(0), WithLinkName("child"))
	if err != nil {
		return 2
	}
	if err := s.Run(ctx); err != nil {
		return 1
	}
	return 0
}
