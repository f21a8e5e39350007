package sidecar

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"go.uber.org/zap"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv("SIDECAR_TAILER_CHILD") == "1" {
		os.Exit(tailerChild())
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
