package electiontest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/election"
)

// waitLimit bounds every wait of the suite; backends on real clusters under load need slack.
const waitLimit = 20 * time.Second

// TestBackend is a conformance suite for an election.Backend: mutual exclusion, FIFO-free hand-over
// on Release, strictly increasing tokens, abandoned campaigns that block nobody, and Observe
// reporting leaders and "no leader". newBackend returns a fresh backend whose election is empty;
// backends returned for one test share nothing with other tests. It may register cleanups on t.
func TestBackend(t *testing.T, newBackend func(t *testing.T) election.Backend) {
	t.Run("FirstCampaignWins", func(t *testing.T) {
		b := newBackend(t)
		l := campaign(t, b, "a")
		defer release(t, l)
		if got := l.Term(); got.ID != "a" || got.Token == 0 {
			t.Fatalf("Term() = %+v, want ID a and a token > 0", got)
		}
		select {
		case <-l.Lost():
			t.Fatal("Lost() closed while the lease is held")
		default:
		}
		if v := l.ValidUntil(); !v.IsZero() && !time.Now().Before(v) {
			t.Fatalf("ValidUntil() = %v, already past for a fresh lease", v)
		}
	})

	t.Run("ReleaseHandsOver", func(t *testing.T) {
		b := newBackend(t)
		a := campaign(t, b, "a")
		bc := startCampaign(b, "b")
		defer bc.stop(t)
		waitLeader(t, b, "a")
		bc.expectBlocked(t, 100*time.Millisecond)
		release(t, a)
		select {
		case <-a.Lost():
		default:
			t.Fatal("Lost() not closed after Release")
		}
		lb := bc.wait(t)
		if lb.Term().ID != "b" || lb.Term().Token <= a.Term().Token {
			t.Fatalf("second term %+v after %+v: want ID b and a higher token", lb.Term(), a.Term())
		}
		waitLeader(t, b, "b")
		release(t, lb)
	})

	t.Run("ReleaseIdempotent", func(t *testing.T) {
		b := newBackend(t)
		l := campaign(t, b, "a")
		release(t, l)
		release(t, l)
		l2 := campaign(t, b, "b")
		release(t, l2)
	})

	t.Run("AbandonedCampaignBlocksNobody", func(t *testing.T) {
		b := newBackend(t)
		a := campaign(t, b, "a")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			l, err := b.Campaign(ctx, "gone")
			if l != nil {
				err = fmt.Errorf("campaign won while a held the lock: %+v", l.Term())
			}
			done <- err
		}()
		waitLeader(t, b, "a") // let the abandoned candidate queue up behind a (best effort)
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("canceled Campaign returned %v, want context.Canceled", err)
			}
		case <-time.After(waitLimit):
			t.Fatal("Campaign did not return after its ctx was canceled")
		}
		release(t, a)
		waitLeader(t, b, "")
		c := campaign(t, b, "c")
		release(t, c)
	})

	t.Run("ObserveReportsLeaderAndNone", func(t *testing.T) {
		b := newBackend(t)
		ctx, cancel := context.WithCancel(context.Background())
		seen := make(chan election.Term, 64)
		done := make(chan error, 1)
		go func() { done <- b.Observe(ctx, func(tm election.Term) { seen <- tm }) }()
		next := func() election.Term {
			t.Helper()
			select {
			case tm := <-seen:
				return tm
			case <-time.After(waitLimit):
				t.Fatal("Observe reported nothing")
				return election.Term{}
			}
		}
		if diff := cmp.Diff(election.Term{}, next()); diff != "" {
			t.Fatalf("first observation (-want +got):\n%s", diff)
		}
		a := campaign(t, b, "a")
		if diff := cmp.Diff(a.Term(), next()); diff != "" {
			t.Fatalf("after a won (-want +got):\n%s", diff)
		}
		release(t, a)
		if diff := cmp.Diff(election.Term{}, next()); diff != "" {
			t.Fatalf("after a released (-want +got):\n%s", diff)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Observe returned %v after its ctx ended, want nil", err)
			}
		case <-time.After(waitLimit):
			t.Fatal("Observe did not return after its ctx ended")
		}
	})

	t.Run("OneLeaderAtATimeTokensIncrease", func(t *testing.T) {
		b := newBackend(t)
		const n = 4
		type won struct {
			l   election.Lease
			err error
		}
		wins := make(chan won, n)
		ctx, cancel := context.WithTimeout(context.Background(), 3*waitLimit)
		defer cancel()
		for i := range n {
			go func() {
				l, err := b.Campaign(ctx, fmt.Sprintf("c%d", i))
				wins <- won{l, err}
			}()
		}
		var last uint64
		ids := map[string]bool{}
		for range n {
			var w won
			select {
			case w = <-wins:
			case <-time.After(waitLimit):
				t.Fatal("no candidate won after the previous one released")
			}
			if w.err != nil {
				t.Fatalf("Campaign: %v", w.err)
			}
			// Nobody else may win while w holds the lock.
			select {
			case other := <-wins:
				t.Fatalf("%+v won while %+v held the lock (err %v)", other.l.Term(), w.l.Term(), other.err)
			case <-time.After(50 * time.Millisecond):
			}
			tm := w.l.Term()
			if tm.Token <= last {
				t.Fatalf("token %d after %d: tokens must strictly increase", tm.Token, last)
			}
			last = tm.Token
			ids[tm.ID] = true
			release(t, w.l)
		}
		if len(ids) != n {
			t.Fatalf("winners %v: want all %d candidates once", ids, n)
		}
	})
}

func campaign(t *testing.T, b election.Backend, id string) election.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	l, err := b.Campaign(ctx, id)
	if err != nil {
		t.Fatalf("Campaign(%q): %v", id, err)
	}
	return l
}

func release(t *testing.T, l election.Lease) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

// waitLeader waits until Observe reports id as the leader ("" for none).
func waitLeader(t *testing.T, b election.Backend, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	found := false
	_ = b.Observe(ctx, func(tm election.Term) {
		if tm.ID == id && !found {
			found = true
			cancel()
		}
	})
	if !found {
		t.Fatalf("Observe never reported leader %q", id)
	}
}

type pending struct {
	cancel context.CancelFunc
	done   chan struct{}
	l      election.Lease
	err    error
}

func startCampaign(b election.Backend, id string) *pending {
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitLimit)
	p := &pending{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.l, p.err = b.Campaign(ctx, id)
	}()
	return p
}

func (p *pending) expectBlocked(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-p.done:
		t.Fatalf("Campaign returned while another candidate held the lock (err %v)", p.err)
	case <-time.After(d):
	}
}

func (p *pending) wait(t *testing.T) election.Lease {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(waitLimit):
		t.Fatal("Campaign did not win after the holder released")
	}
	if p.err != nil {
		t.Fatalf("Campaign: %v", p.err)
	}
	return p.l
}

// stop cancels the campaign, waits for it, and releases what it won.
func (p *pending) stop(t *testing.T) {
	p.cancel()
	<-p.done
	if p.l != nil {
		release(t, p.l)
	}
}
