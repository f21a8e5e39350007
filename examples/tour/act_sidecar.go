package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/podblocks/podblocks/sidecar"
	"github.com/podblocks/podblocks/sidecartest"
)

// sidecarAct plays the paper's log-saver sidecar on a shared directory: a Tailer ships an app's log
// to a file with a checkpoint, is stopped, the app rotates its log twice meanwhile, and the restarted
// Tailer ships the rest exactly once, oldest file first. Then a Reloader sees ConfigMap-style
// ..data symlink swaps and reloads once per update.
func sidecarAct() act {
	return act{
		pattern: "sidecar",
		pkg:     "sidecar",
		run: func(ctx context.Context, s *stage) (string, error) {
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			dir := filepath.Join(s.dir, "sidecar")
			logs := filepath.Join(dir, "logs")
			if err := os.MkdirAll(logs, 0o755); err != nil {
				return "", err
			}
			app, out, state := filepath.Join(logs, "app.log"), filepath.Join(dir, "shipped.jsonl"), filepath.Join(dir, "state.json")
			write := func(from, to int) error {
				f, err := os.OpenFile(app, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
				if err != nil {
					return err
				}
				defer f.Close()
				for i := from; i < to; i++ {
					fmt.Fprintf(f, "request %d served\n", i)
				}
				return nil
			}
			shipped := func() int { data, _ := os.ReadFile(out); return bytes.Count(data, []byte("\n")) }
			// ship runs a Tailer until want lines are in the sink file.
			ship := func(want int) error {
				sink, err := sidecar.OpenFileSink(out)
				if err != nil {
					return err
				}
				defer sink.Close()
				t, err := sidecar.NewTailer([]string{filepath.Join(logs, "*.log")}, sink,
					sidecar.WithCheckpoint(state), sidecar.WithPollInterval(20*time.Millisecond))
				if err != nil {
					return err
				}
				tctx, stop := context.WithCancel(ctx)
				done := make(chan error, 1)
				go func() { done <- t.Run(tctx) }()
				for shipped() < want && tctx.Err() == nil {
					time.Sleep(10 * time.Millisecond)
				}
				stop()
				if err := <-done; err != nil {
					return err
				}
				if got := shipped(); got != want {
					return fmt.Errorf("shipped %d lines, want %d", got, want)
				}
				return nil
			}
			if err := write(0, 5); err != nil {
				return "", err
			}
			if err := ship(5); err != nil {
				return "", err
			}
			s.say("the tailer shipped 5 lines of %s to %s, with offsets in %s, then stopped", filepath.Base(app), filepath.Base(out), filepath.Base(state))
			// While it is down: more lines, then two logrotate-style rotations.
			steps := []func() error{
				func() error { return write(5, 8) },
				func() error { return os.Rename(app, app+".1") },
				func() error { return write(8, 12) },
				func() error { return os.Rename(app+".1", app+".2") },
				func() error { return os.Rename(app, app+".1") },
				func() error { return write(12, 15) },
			}
			for _, step := range steps {
				if err := step(); err != nil {
					return "", err
				}
			}
			s.say("meanwhile the app wrote 10 more lines and rotated twice (app.log -> app.log.1 -> app.log.2)")
			if err := ship(15); err != nil {
				return "", err
			}
			s.say("restarted, the tailer found the rotated files by inode and fingerprint: 15 lines, each once")

			cm := filepath.Join(dir, "configmap")
			if err := os.MkdirAll(cm, 0o755); err != nil {
				return "", err
			}
			if err := sidecartest.WriteAtomic(cm, map[string]string{"app.yaml": "replicas: 1"}); err != nil {
				return "", err
			}
			r, err := sidecar.NewReloader([]string{cm}, func(context.Context) error { return nil }, sidecar.WithDebounce(10*time.Millisecond))
			if err != nil {
				return "", err
			}
			s.keep(nil, r) // its final state stays on /statusz under -serve
			rctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- r.Run(rctx) }()
			defer func() { stop(); <-done }()
			if err := awaitReady(rctx, "the reloader", r.Ready(), done); err != nil {
				return "", err
			}
			const updates = 3
			for i := 1; i <= updates; i++ {
				if err := sidecartest.WriteAtomic(cm, map[string]string{"app.yaml": fmt.Sprintf("replicas: %d", i+1)}); err != nil {
					return "", err
				}
				for r.Reloads() < uint64(i) && rctx.Err() == nil {
					time.Sleep(5 * time.Millisecond)
				}
			}
			s.say("a ConfigMap volume was updated %d times (..data symlink swaps): the reloader reloaded %d times", updates, r.Reloads())
			return fmt.Sprintf("15 lines shipped exactly once across 2 rotations and a restart; %d ConfigMap swaps -> %d reloads", updates, r.Reloads()), nil
		},
	}
}
