package election_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/election"
	"github.com/podblocks/podblocks/electiontest"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMemoryConformance(t *testing.T) {
	electiontest.TestBackend(t, func(*testing.T) election.Backend { return election.NewMemory() })
}

func TestNewValidates(t *testing.T) {
	fn := func(context.Context, election.Term) error { return nil }
	tests := []struct {
		name string
		b    election.Backend
		id   string
		fn   election.LeaderFunc
	}{
		{"nil backend", nil, "a", fn},
		{"empty id", election.NewMemory(), "", fn},
		{"nil func", election.NewMemory(), "a", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := election.New(tt.b, tt.id, tt.fn); err == nil {
				t.Fatal("New accepted bad arguments")
			}
		})
	}
	reg := prometheus.NewRegistry()
	if _, err := election.New(election.NewMemory(), "a", fn, election.WithRegisterer(reg)); err != nil {
		t.Fatal(err)
	}
	if _, err := election.New(election.NewMemory(), "b", fn, election.WithRegisterer(reg)); err == nil {
		t.Fatal("second Elector registered the same metrics without error")
	}
}

// blockingLeader records the terms it ran and blocks until its ctx ends.
type blockingLeader struct {
	mu    sync.Mutex
	terms []election.Term
}

func (b *blockingLeader) run(ctx context.Context, t election.Term) error {
	b.mu.Lock()
	b.terms = append(b.terms, t)
	b.mu.Unlock()
	<-ctx.Done()
	return nil
}

func (b *blockingLeader) got() []election.Term {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]election.Term(nil), b.terms...)
}

func TestTwoElectorsResignHandsOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := election.NewMemory()
		var la, lb blockingLeader
		a, _ := election.New(m, "a", la.run)
		b, _ := election.New(m, "b", lb.run)
		ctx, cancel := context.WithCancel(t.Context())
		errs := make(chan error, 2)
		go func() { errs <- a.Run(ctx) }()
		synctest.Wait()
		go func() { errs <- b.Run(ctx) }()
		synctest.Wait()
		<-a.Ready()
		<-b.Ready()
		if diff := cmp.Diff(election.Leader{ID: "a", Token: 1, Self: true}, a.Leader()); diff != "" {
			t.Fatalf("a.Leader() (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(election.Leader{ID: "a", Token: 1}, b.Leader()); diff != "" {
			t.Fatalf("b.Leader() (-want +got):\n%s", diff)
		}
		if err := b.Resign(ctx); !errors.Is(err, election.ErrNotLeader) {
			t.Fatalf("b.Resign = %v, want ErrNotLeader", err)
		}
		if err := a.Resign(ctx); err != nil {
			t.Fatalf("a.Resign: %v", err)
		}
		synctest.Wait()
		if diff := cmp.Diff(election.Leader{ID: "b", Token: 2, Self: true}, b.Leader()); diff != "" {
			t.Fatalf("after resign, b.Leader() (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(election.Leader{ID: "b", Token: 2}, a.Leader()); diff != "" {
			t.Fatalf("after resign, a.Leader() (-want +got):\n%s", diff)
		}
		cancel()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatalf("Run: %v", err)
			}
		}
		if diff := cmp.Diff([]election.Term{{ID: "a", Token: 1}}, la.got()); diff != "" {
			t.Fatalf("a's terms (-want +got):\n%s", diff)
		}
		// b led term 2; a campaigned again after resigning and won term 3 when b shut down,
		// unless shutdown raced it: both are correct, but tokens must increase.
		got := lb.got()
		if len(got) != 1 || got[0] != (election.Term{ID: "b", Token: 2}) {
			t.Fatalf("b's terms = %v, want [{b 2}]", got)
		}
	})
}

func TestRunWaitsForLeaderFunc(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var returned bool
		e, _ := election.New(election.NewMemory(), "a", func(ctx context.Context, _ election.Term) error {
			<-ctx.Done()
			time.Sleep(time.Second) // slow cleanup; Run must wait for it
			returned = true
			return nil
		})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if !returned {
			t.Fatal("Run returned before the leader func did")
		}
	})
}

func TestLeaderFuncErrorEndsRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boom := errors.New("boom")
		m := election.NewMemory()
		e, _ := election.New(m, "a", func(context.Context, election.Term) error { return boom })
		err := e.Run(t.Context())
		if !errors.Is(err, boom) {
			t.Fatalf("Run = %v, want boom", err)
		}
		// The lock was released: another candidate wins at once.
		l, err := m.Campaign(t.Context(), "b")
		if err != nil {
			t.Fatal(err)
		}
		if l.Term().Token != 2 {
			t.Fatalf("next token %d, want 2", l.Term().Token)
		}
		_ = l.Release(t.Context())
	})
}

func TestLeaderFuncNilRecampaigns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n int
		ctx, cancel := context.WithCancel(t.Context())
		e, _ := election.New(election.NewMemory(), "a", func(_ context.Context, tm election.Term) error {
			n++
			if tm.Token == 3 {
				cancel()
			}
			return nil
		})
		if err := e.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if n != 3 {
			t.Fatalf("leader func ran %d times, want 3 (it returns nil, so the Elector campaigns again)", n)
		}
	})
}

func TestRunTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var l blockingLeader
		e, _ := election.New(election.NewMemory(), "a", l.run)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		synctest.Wait()
		if err := e.Run(ctx); !errors.Is(err, election.ErrRunning) {
			t.Fatalf("second Run = %v, want ErrRunning", err)
		}
		cancel()
		<-done
	})
}

// TestObserveSequence checks Observe reports leader, "no leader" and other leaders, in order.
func TestObserveSequence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &electiontest.Fake{Manual: true}
		var l blockingLeader
		e, _ := election.New(f, "me", l.run)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		<-e.Ready()
		octx, ocancel := context.WithCancel(ctx)
		ch := e.Observe(octx)
		var got []election.Leader
		next := func() {
			synctest.Wait()
			got = append(got, <-ch)
		}
		next()
		f.Grant("other")
		next()
		f.Revoke()
		next()
		f.Grant("me")
		next()
		ocancel()
		synctest.Wait()
		if _, open := <-ch; open {
			t.Fatal("Observe channel still open after its ctx ended")
		}
		want := []election.Leader{{}, {ID: "other", Token: 1}, {}, {ID: "me", Token: 2, Self: true}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("observed (-want +got):\n%s", diff)
		}
		cancel()
		<-done
		after := e.Observe(t.Context())
		if l, open := <-after; !open || l != (election.Leader{}) {
			t.Fatalf("Observe after Run returned: first receive %+v, %v; want the zero Leader", l, open)
		}
		if _, open := <-after; open {
			t.Fatal("Observe after Run returned: channel not closed after the current value")
		}
	})
}

// TestObserveBeforeRun: a subscription made before Run has started (the obvious order, right after
// go e.Run(ctx)) stays open, is served once Run runs, and is closed when Run returns.
func TestObserveBeforeRun(t *testing.T) {
	for _, order := range []string{"Observe, then go Run", "go Run, then Observe"} {
		t.Run(order, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var l blockingLeader
				e, _ := election.New(election.NewMemory(), "a", l.run)
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan error, 1)
				var ch <-chan election.Leader
				if order == "Observe, then go Run" {
					ch = e.Observe(ctx)
					go func() { done <- e.Run(ctx) }()
				} else {
					go func() { done <- e.Run(ctx) }()
					ch = e.Observe(ctx)
				}
				synctest.Wait()
				// A slow reader sees the latest value: this candidate's term.
				if got, open := <-ch; !open || got != (election.Leader{ID: "a", Token: 1, Self: true}) {
					t.Fatalf("first receive %+v (open %v), want a's term on an open channel", got, open)
				}
				select {
				case got, open := <-ch:
					t.Fatalf("receive %+v (open %v) while nothing changed, want the channel open and empty", got, open)
				default:
				}
				cancel()
				if err := <-done; err != nil {
					t.Fatalf("Run: %v", err)
				}
				for range ch { // the step-down, if the reader was not too slow for it
				}
			})
		})
	}
}

// TestObserveBeforeRunServedByRun: a subscription made before Run sees what Run observes, and is
// closed when Run returns, although its own ctx is still live.
func TestObserveBeforeRunServedByRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &electiontest.Fake{Manual: true}
		var l blockingLeader
		e, _ := election.New(f, "me", l.run)
		ch := e.Observe(t.Context())
		if got := <-ch; got != (election.Leader{}) {
			t.Fatalf("before Run: %+v, want the zero Leader", got)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		synctest.Wait()
		f.Grant("other")
		synctest.Wait()
		if got, open := <-ch; !open || got != (election.Leader{ID: "other", Token: 1}) {
			t.Fatalf("after Grant: %+v (open %v), want other's term", got, open)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		for range ch {
		}
	})
}

// stuckRelease is a Backend whose leases cannot be released (the lock service is unreachable), so
// the backend keeps reporting a term after its holder stepped down, until the lease is revoked.
type stuckRelease struct{ *electiontest.Fake }

func (b stuckRelease) Campaign(ctx context.Context, id string) (election.Lease, error) {
	l, err := b.Fake.Campaign(ctx, id)
	if err != nil {
		return nil, err
	}
	return stuckLease{l}, nil
}

type stuckLease struct{ election.Lease }

func (stuckLease) Release(context.Context) error { return errors.New("lock service unreachable") }

// TestSteppedDownTermIsNotReported: a candidate that stepped down (here because its renewals stopped
// being confirmed) and could not release its lock does not report itself as the leader with Self
// false while the backend still shows the term: the term is over, so there is no leader.
func TestSteppedDownTermIsNotReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &electiontest.Fake{TTL: time.Second}
		var l blockingLeader
		e, _ := election.New(stuckRelease{f}, "me", l.run)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		synctest.Wait()
		ch := e.Observe(ctx)
		if diff := cmp.Diff(election.Leader{ID: "me", Token: 1, Self: true}, <-ch); diff != "" {
			t.Fatalf("leading (-want +got):\n%s", diff)
		}
		f.StopRenewals()
		time.Sleep(time.Second) // past the TTL: the Elector steps down
		synctest.Wait()
		if got := f.Leader(); got != (election.Term{ID: "me", Token: 1}) {
			t.Fatalf("backend's leader %+v, want the stepped-down term still (its release failed)", got)
		}
		if diff := cmp.Diff(election.Leader{}, e.Leader()); diff != "" {
			t.Fatalf("after the step-down, Leader() (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(election.Leader{}, <-ch); diff != "" {
			t.Fatalf("after the step-down, Observe (-want +got):\n%s", diff)
		}
		f.Revoke() // the lease ends at last; the candidate's new campaign wins
		synctest.Wait()
		if diff := cmp.Diff(election.Leader{ID: "me", Token: 2, Self: true}, e.Leader()); diff != "" {
			t.Fatalf("after the revoke, Leader() (-want +got):\n%s", diff)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
}

func TestStatusz(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var l blockingLeader
		e, _ := election.New(election.NewMemory(), "a", l.run)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		synctest.Wait()
		title, header, rows := e.Statusz()
		want := [][]string{{"id", "a"}, {"leader", "a"}, {"token", "1"}, {"self", "true"}, {"terms won", "1"}}
		if diff := cmp.Diff(want, rows); diff != "" || title != "election" || len(header) != 2 {
			t.Fatalf("Statusz = %q %q, rows (-want +got):\n%s", title, header, diff)
		}
		cancel()
		<-done
	})
}
