package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/podblocks/podblocks/election"
)

// electionAct runs three candidates on the in-process Memory backend: the leader writes to a
// resource guarded by a Fence, hands over with Resign, and a late write from the old term is
// rejected. The HTTP leader API answers what an app in any language would ask.
func electionAct() act {
	return act{
		pattern: "leader election",
		pkg:     "election",
		run: func(ctx context.Context, s *stage) (string, error) {
			backend := election.NewMemory()
			var fence election.Fence
			var mu sync.Mutex
			var writes []string
			started := make(chan election.Term, 8)
			ids := []string{"a", "b", "c"}
			electors := map[string]*election.Elector{}
			for _, id := range ids {
				e, err := election.New(backend, id, func(leaderCtx context.Context, t election.Term) error {
					err := fence.Do(t.Token, func() error {
						mu.Lock()
						defer mu.Unlock()
						writes = append(writes, fmt.Sprintf("%s@%d", t.ID, t.Token))
						return nil
					})
					if err != nil {
						return err
					}
					started <- t
					<-leaderCtx.Done()
					return nil
				})
				if err != nil {
					return "", err
				}
				electors[id] = e
				s.keep(nil, e) // its final state stays on /statusz under -serve
			}
			runCtx, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			errs := make(chan error, len(ids))
			defer func() {
				stop()
				wg.Wait()
			}()
			next := func() (election.Term, error) {
				select {
				case t := <-started:
					return t, nil
				case err := <-errs:
					if err == nil { // Run ends with nil when runCtx, and so ctx, ended
						err = fmt.Errorf("a candidate stopped: %w", context.Cause(ctx))
					}
					return election.Term{}, err
				case <-ctx.Done():
					return election.Term{}, ctx.Err()
				}
			}
			// Start a first, so it leads; then the others queue behind it.
			wg.Go(func() { errs <- electors["a"].Run(runCtx) })
			first, err := next()
			if err != nil {
				return "", err
			}
			for _, id := range ids[1:] {
				wg.Go(func() { errs <- electors[id].Run(runCtx) })
			}
			for _, id := range ids {
				<-electors[id].Ready()
			}
			s.say("3 candidates on the Memory backend; %s leads with fencing token %d", first.ID, first.Token)

			api := election.NewHandler(electors["b"])
			ask := func() string {
				w := httptest.NewRecorder()
				api.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/leader", nil))
				return strings.TrimSpace(w.Body.String())
			}
			s.say("candidate b asks its sidecar: GET /leader -> %s", ask())

			chain := []string{fmt.Sprintf("%s(%d)", first.ID, first.Token)}
			cur := first
			for range 2 {
				if err := electors[cur.ID].Resign(ctx); err != nil {
					return "", err
				}
				t, err := next()
				if err != nil {
					return "", err
				}
				s.say("%s resigned; %s took over at once with token %d", cur.ID, t.ID, t.Token)
				chain = append(chain, fmt.Sprintf("%s(%d)", t.ID, t.Token))
				cur = t
			}
			s.say("candidate b asks again: GET /leader -> %s", ask())

			// A write that the first leader sent before it resigned arrives now.
			err = fence.Do(first.Token, func() error { return errors.New("must not run") })
			if !errors.Is(err, election.ErrStaleToken) {
				return "", fmt.Errorf("stale write from token %d not rejected: %v", first.Token, err)
			}
			s.say("a late write from %s with token %d: %v", first.ID, first.Token, err)
			mu.Lock()
			s.say("writes the resource accepted: %s", strings.Join(writes, ", "))
			mu.Unlock()
			return fmt.Sprintf("leaders %s; stale write rejected", strings.Join(chain, " -> ")), nil
		},
	}
}
