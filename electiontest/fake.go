package electiontest

import (
	"context"
	"sync"
	"time"

	"github.com/podblocks/podblocks/election"
)

// Fake is an in-process election.Backend that a test drives by hand: Grant makes a candidate (or an
// outside holder) the leader, Revoke ends the current term, StopRenewals makes the holder's lease
// stop being renewed so its Elector steps down on its own. Put a real election.Elector on top of it
// to test an app's leader logic without a cluster.
//
// Unless Manual is set, a Campaign also wins on its own when nobody leads (first come, first
// served), so Fake passes TestBackend. The zero value is ready to use; do not copy it after first use.
type Fake struct {
	// Manual, if true, keeps Campaign waiting until Grant names its candidate.
	Manual bool
	// TTL is the lease time-to-live the fake's leases report: while renewals run, ValidUntil is
	// always now+TTL; after StopRenewals it stays at that moment+TTL. Zero means 10s.
	TTL time.Duration

	mu      sync.Mutex
	token   uint64
	holder  election.Term // zero when nobody leads
	lease   *fakeLease    // the holder's lease; nil for an outside holder set by Grant
	queue   []*fakeWait
	changed chan struct{}
}

var _ election.Backend = (*Fake)(nil)

type fakeWait struct {
	id      string
	granted *fakeLease
}

func (f *Fake) changedLocked() chan struct{} {
	if f.changed == nil {
		f.changed = make(chan struct{})
	}
	return f.changed
}

func (f *Fake) broadcastLocked() {
	if f.changed != nil {
		close(f.changed)
		f.changed = nil
	}
}

// endLocked ends the current term, if any.
func (f *Fake) endLocked() {
	if f.lease != nil {
		f.lease.end()
	}
	f.holder, f.lease = election.Term{}, nil
}

func (f *Fake) grantLocked(w *fakeWait) *fakeLease {
	f.token++
	ttl := f.TTL
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	l := &fakeLease{f: f, term: election.Term{ID: w.id, Token: f.token}, lost: make(chan struct{}), ttl: ttl}
	f.holder, f.lease = l.term, l
	w.granted = l
	for i, q := range f.queue {
		if q == w {
			f.queue = append(f.queue[:i:i], f.queue[i+1:]...)
			break
		}
	}
	f.broadcastLocked()
	return l
}

// Campaign implements election.Backend.
func (f *Fake) Campaign(ctx context.Context, id string) (election.Lease, error) {
	w := &fakeWait{id: id}
	f.mu.Lock()
	f.queue = append(f.queue, w)
	for {
		if w.granted != nil {
			f.mu.Unlock()
			return w.granted, nil
		}
		if !f.Manual && f.holder.IsZero() && f.queue[0] == w {
			l := f.grantLocked(w)
			f.mu.Unlock()
			return l, nil
		}
		ch := f.changedLocked()
		f.mu.Unlock()
		select {
		case <-ch:
			f.mu.Lock()
		case <-ctx.Done():
			f.mu.Lock()
			if w.granted != nil { // granted while we were leaving: give it back
				if f.lease == w.granted {
					f.endLocked()
				}
			}
			for i, q := range f.queue {
				if q == w {
					f.queue = append(f.queue[:i:i], f.queue[i+1:]...)
					break
				}
			}
			f.broadcastLocked()
			f.mu.Unlock()
			return nil, ctx.Err()
		}
	}
}

// Observe implements election.Backend.
func (f *Fake) Observe(ctx context.Context, fn func(election.Term)) error {
	first := true
	var last election.Term
	for {
		f.mu.Lock()
		cur := f.holder
		ch := f.changedLocked()
		f.mu.Unlock()
		if first || cur != last {
			first, last = false, cur
			fn(cur)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil
		}
	}
}

// Grant ends the current term (its holder's lease is lost) and makes id the leader with the next
// token: the oldest waiting Campaign for id wins if there is one, else id leads as an outside holder
// (a leader elsewhere that this process only observes). It returns the new term.
func (f *Fake) Grant(id string) election.Term {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.endLocked()
	for _, w := range f.queue {
		if w.id == id {
			return f.grantLocked(w).term
		}
	}
	f.token++
	f.holder = election.Term{ID: id, Token: f.token}
	f.broadcastLocked()
	return f.holder
}

// Revoke ends the current term: the holder's lease is lost. Unless Manual is set, the oldest waiting
// Campaign then wins.
func (f *Fake) Revoke() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.endLocked()
	f.broadcastLocked()
}

// StopRenewals stops confirming the holder's renewals from now on, without reporting the lease
// lost, as when a leader is cut off from its backend: its ValidUntil stays at now+TTL, and an
// Elector must step down by itself when that passes. The term stays the backend's leader until
// Revoke, Grant or the holder's Release.
func (f *Fake) StopRenewals() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lease != nil {
		f.lease.mu.Lock()
		if f.lease.frozen.IsZero() {
			f.lease.frozen = time.Now().Add(f.lease.ttl)
		}
		f.lease.mu.Unlock()
	}
}

// Leader returns the current term (the zero Term when nobody leads).
func (f *Fake) Leader() election.Term {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.holder
}

// Waiting returns the IDs of the candidates whose Campaign is waiting, oldest first.
func (f *Fake) Waiting() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, 0, len(f.queue))
	for _, w := range f.queue {
		ids = append(ids, w.id)
	}
	return ids
}

type fakeLease struct {
	f    *Fake
	term election.Term
	lost chan struct{}
	once sync.Once

	ttl    time.Duration
	mu     sync.Mutex
	frozen time.Time // ValidUntil once renewals stopped; zero while they run
}

func (l *fakeLease) end() { l.once.Do(func() { close(l.lost) }) }

func (l *fakeLease) Term() election.Term   { return l.term }
func (l *fakeLease) Lost() <-chan struct{} { return l.lost }

func (l *fakeLease) ValidUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.frozen.IsZero() {
		return time.Now().Add(l.ttl)
	}
	return l.frozen
}

func (l *fakeLease) Release(context.Context) error {
	l.f.mu.Lock()
	defer l.f.mu.Unlock()
	if l.f.lease == l {
		l.f.endLocked()
		l.f.broadcastLocked()
	}
	l.end()
	return nil
}
