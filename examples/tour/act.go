package main

import (
	"context"
	"fmt"
	"io"
	"sync"
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
