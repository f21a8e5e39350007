package election_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/election"
)

// expiringBackend is Memory with leases whose ValidUntil is an hour ahead until expire is set, and
// an hour past after: the lease ran out while the Elector's own step-down timer (set an hour
// ahead) has not fired, as in a process resumed after a SIGSTOP longer than the TTL.
type expiringBackend struct {
	*election.Memory
	expired atomic.Bool
}

func (b *expiringBackend) Campaign(ctx context.Context, id string) (election.Lease, error) {
	l, err := b.Memory.Campaign(ctx, id)
	if err != nil {
		return nil, err
	}
	return expiringLease{l, b}, nil
}

type expiringLease struct {
	election.Lease
	b *expiringBackend
}

func (l expiringLease) ValidUntil() time.Time {
	if l.b.expired.Load() {
		return time.Now().Add(-time.Hour)
	}
	return time.Now().Add(time.Hour)
}

// TestExpiredLeaseIsNotReportedAsSelf: once the lease's ValidUntil has passed, Leader, Statusz and
// the HTTP API stop saying self at once, before the goroutine that ends the term has run.
func TestExpiredLeaseIsNotReportedAsSelf(t *testing.T) {
	b := &expiringBackend{Memory: election.NewMemory()}
	var l blockingLeader
	e, _ := election.New(b, "a", l.run)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	for l := range e.Observe(ctx) {
		if l.Self {
			break
		}
	}
	srv := httptest.NewServer(election.NewHandler(e))
	defer srv.Close()
	if diff := cmp.Diff(election.Leader{ID: "a", Token: 1, Self: true}, getLeader(t, srv.URL)); diff != "" {
		t.Fatalf("leading: GET /leader (-want +got):\n%s", diff)
	}

	b.expired.Store(true)
	if diff := cmp.Diff(election.Leader{}, e.Leader()); diff != "" {
		t.Fatalf("lease expired: Leader() (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(election.Leader{}, getLeader(t, srv.URL)); diff != "" {
		t.Fatalf("lease expired: GET /leader (-want +got):\n%s", diff)
	}
	if _, _, rows := e.Statusz(); rows[3][1] != "false" {
		t.Fatalf("lease expired: Statusz self = %q, want false", rows[3][1])
	}
}

// heldCampaign is Memory whose Campaign, once it has won, waits for release before returning, so
// its Observe reports the candidate's own term while the Campaign call is still in flight.
type heldCampaign struct {
	*election.Memory
	release chan struct{}
}

func (b heldCampaign) Campaign(ctx context.Context, id string) (election.Lease, error) {
	l, err := b.Memory.Campaign(ctx, id)
	if err != nil {
		return nil, err
	}
	<-b.release
	return l, nil
}

// TestOwnKeyBeforeCampaignReturns: a candidate whose key the backend already reports as the leader
// while its Campaign has not returned never reports itself with Self false.
func TestOwnKeyBeforeCampaignReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := heldCampaign{election.NewMemory(), make(chan struct{})}
		var l blockingLeader
		e, _ := election.New(b, "a", l.run)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		synctest.Wait() // a's Campaign has won and waits; its Observe has seen a's term
		<-e.Ready()
		if diff := cmp.Diff(election.Leader{}, e.Leader()); diff != "" {
			t.Errorf("Campaign not returned: Leader() (-want +got):\n%s", diff)
		}
		ch := e.Observe(ctx)
		if diff := cmp.Diff(election.Leader{}, <-ch); diff != "" {
			t.Errorf("Campaign not returned: Observe (-want +got):\n%s", diff)
		}
		close(b.release)
		synctest.Wait()
		if diff := cmp.Diff(election.Leader{ID: "a", Token: 1, Self: true}, <-ch); diff != "" {
			t.Errorf("Campaign returned: Observe (-want +got):\n%s", diff)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
}

// failingRelease is Memory whose leases fail their first fails Releases (the lock service was
// unreachable) and release for real after.
type failingRelease struct {
	*election.Memory
	fails int

	mu    sync.Mutex
	calls int
}

func (b *failingRelease) Campaign(ctx context.Context, id string) (election.Lease, error) {
	l, err := b.Memory.Campaign(ctx, id)
	if err != nil {
		return nil, err
	}
	return failingLease{l, b}, nil
}

type failingLease struct {
	election.Lease
	b *failingRelease
}

func (l failingLease) Release(ctx context.Context) error {
	l.b.mu.Lock()
	l.b.calls++
	fail := l.b.calls <= l.b.fails
	l.b.mu.Unlock()
	if fail {
		return errors.New("lock service unreachable")
	}
	return l.Lease.Release(ctx)
}

// TestFailedReleaseIsRetried: a term whose Release failed is released once the lock service
// answers again, so the next candidate takes over without waiting for the lease to expire.
func TestFailedReleaseIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &failingRelease{Memory: election.NewMemory(), fails: 3}
		var la, lb blockingLeader
		backoff := election.WithBackoff(func(int) time.Duration { return 100 * time.Millisecond })
		a, _ := election.New(b, "a", la.run, backoff)
		bb, _ := election.New(b, "b", lb.run, backoff)
		ctx, stop := runInTurn(t, a, bb)
		defer stop()
		if err := a.Resign(ctx); err != nil {
			t.Fatalf("a.Resign: %v", err)
		}
		time.Sleep(time.Second) // 3 retries 100ms apart
		synctest.Wait()
		if diff := cmp.Diff(election.Leader{ID: "b", Token: 2, Self: true}, bb.Leader()); diff != "" {
			t.Errorf("after a's failed release, b.Leader() (-want +got):\n%s", diff)
		}
	})
}

// runInTurn runs first, then (once the bubble is idle) second, until stop is called; stop ends
// both Runs and checks they returned nil. Call it inside a synctest bubble.
func runInTurn(t *testing.T, first, second *election.Elector) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(t.Context())
	errs := make(chan error, 2)
	go func() { errs <- first.Run(ctx) }()
	synctest.Wait()
	go func() { errs <- second.Run(ctx) }()
	synctest.Wait()
	return ctx, func() {
		cancel()
		for range 2 {
			if err := <-errs; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
}

// TestSameIDLeaderIsShownWhileCampaigning: a process restarted with the same id while its old
// incarnation still holds the term (a pod's default id is its hostname) campaigns behind it; it
// must report that leader (Self false), not "no leader" for as long as it waits.
func TestSameIDLeaderIsShownWhileCampaigning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := election.NewMemory()
		var lold, lnew blockingLeader
		old, _ := election.New(b, "pod-0", lold.run)
		restarted, _ := election.New(b, "pod-0", lnew.run)
		_, stop := runInTurn(t, old, restarted)
		defer stop()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if diff := cmp.Diff(election.Leader{ID: "pod-0", Token: 1}, restarted.Leader()); diff != "" {
			t.Errorf("the old incarnation leads: restarted.Leader() (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(election.Leader{ID: "pod-0", Token: 1, Self: true}, old.Leader()); diff != "" {
			t.Errorf("old.Leader() (-want +got):\n%s", diff)
		}
	})
}

// unreleasedCampaign is Memory whose first Campaign wins, then fails with an UnreleasedError
// carrying the won lease, whose Releases fail until release is closed: its key leads though the
// candidate does not (etcd restoring a waiting candidate's lease after a restart).
type unreleasedCampaign struct {
	*election.Memory
	release chan struct{}
	calls   atomic.Int32
}

func (b *unreleasedCampaign) Campaign(ctx context.Context, id string) (election.Lease, error) {
	l, err := b.Memory.Campaign(ctx, id)
	if err != nil || b.calls.Add(1) > 1 {
		return l, err
	}
	return nil, &election.UnreleasedError{Err: election.ErrLeaseLost, Lease: unreleasedLease{l, b.release}, ReleaseErr: errors.New("lock service unreachable")}
}

type unreleasedLease struct {
	election.Lease
	release chan struct{}
}

func (l unreleasedLease) Release(ctx context.Context) error {
	select {
	case <-l.release:
		return l.Lease.Release(ctx)
	default:
		return errors.New("lock service unreachable")
	}
}

// TestUnreleasedCampaignLeaseIsNotShownAsLeader: after a Campaign failed and could not release its
// lease, whose key the backend then names as the leader, the candidate reports no leader (not
// itself with Self false); once the retried release succeeds, it campaigns and leads.
func TestUnreleasedCampaignLeaseIsNotShownAsLeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &unreleasedCampaign{Memory: election.NewMemory(), release: make(chan struct{})}
		var l blockingLeader
		e, _ := election.New(b, "a", l.run, election.WithBackoff(func(int) time.Duration { return 100 * time.Millisecond }))
		ctx, cancel := context.WithCancel(t.Context())
		// Every change a subscriber sees: never the stuck lease's key as a leader, not even for
		// the moment between showing what was held back and marking the lease.
		var seen []election.Leader
		watched := make(chan struct{})
		obs := e.Observe(ctx)
		go func() {
			defer close(watched)
			for l := range obs {
				seen = append(seen, l)
			}
		}()
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		synctest.Wait()
		time.Sleep(5 * time.Second) // the next Campaign waits behind the stuck lease
		synctest.Wait()
		if diff := cmp.Diff(election.Leader{}, e.Leader()); diff != "" {
			t.Errorf("failed Campaign's lease leads: Leader() (-want +got):\n%s", diff)
		}
		close(b.release)
		time.Sleep(time.Second)
		synctest.Wait()
		if diff := cmp.Diff(election.Leader{ID: "a", Token: 2, Self: true}, e.Leader()); diff != "" {
			t.Errorf("stuck lease released: Leader() (-want +got):\n%s", diff)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		<-watched
		for _, l := range seen {
			if l.ID == "a" && !l.Self {
				t.Errorf("a subscriber saw the failed Campaign's lease as a leader: %+v (all: %+v)", l, seen)
				break
			}
		}
	})
}
