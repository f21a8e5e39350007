package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// act is one pattern's part of the tour. Each act lives in act_<package>.go.
type act struct {
	pattern string // the paper's pattern, shown in the summary table
	pkg     string // the podblocks package it exercises
	// run plays the act: it narrates with s.say, and returns a one-line result for the summary table.
	// It must stop everything it started before it returns, except what it hands to s.keep.
	run func(ctx context.Context, s *stage) (string, error)
}

// stage is what the tour shares with its acts.
type stage struct {
	out io.Writer
	dir string // a scratch directory, removed when the tour ends

	mu        sync.Mutex
	kept      []component // components that keep running under -serve (in order)
	providers []any       // status providers for /statusz (values with a Statusz method)
}

// component is lifecycle.Component, spelled structurally.
type component interface {
	Run(ctx context.Context) error
}

// say narrates one line of the current act.
func (s *stage) say(format string, args ...any) {
	fmt.Fprintf(s.out, "    "+format+"\n", args...)
}

// keep hands c to the tour: under -serve it runs after the acts with the hook server, else it is
// not started. status, if non-nil, is shown on /statusz.
func (s *stage) keep(c component, status any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c != nil {
		s.kept = append(s.kept, c)
	}
	if status != nil {
		s.providers = append(s.providers, status)
	}
}

// waitFor calls cond every interval until it holds. When ctx ends first it returns an error naming
// what it waited for and wrapping ctx's error.
func waitFor(ctx context.Context, what string, interval time.Duration, cond func() bool) error {
	for !cond() {
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for %s: %w", what, context.Cause(ctx))
		case <-t.C:
		}
	}
	return nil
}

// sleep waits d, or less when ctx ends first; then it returns ctx's error.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// awaitReady waits until ready is closed, or until the Run whose result done (buffered) carries
// ended first. Then it puts the result back in done, for whoever waits for Run to end, and returns
// Run's error or, when Run ended with nil because ctx did, one saying that what stopped.
func awaitReady(ctx context.Context, what string, ready <-chan struct{}, done chan error) error {
	select {
	case <-ready:
		return nil
	case err := <-done:
		done <- err
		if err == nil {
			err = fmt.Errorf("%s stopped before it was ready: %w", what, context.Cause(ctx))
		}
		return err
	}
}
