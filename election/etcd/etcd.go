package etcd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/podblocks/podblocks/election"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// DefaultPrefix is where elections live in the key space: DefaultPrefix + name + "/".
const DefaultPrefix = "/podblocks/election/"

// DefaultTTL is the lease TTL when WithTTL is not given.
const DefaultTTL = 10 * time.Second

// Backend is an election.Backend on an etcd cluster (servers 3.4 and later). Each Campaign grants a
// lease with the configured TTL, puts a key under the election's prefix attached to that lease, and
// waits until no key with a lower creation revision remains; the key's creation revision is the
// term's fencing token, so tokens strictly increase across terms cluster-wide. The lease is renewed
// every TTL/3 by the Backend itself, which records the send time of each renewal the server
// confirms: Lease.ValidUntil is that send time plus the TTL the server granted. The term ends when
// the lease ends (expiry, revocation) or renewal cannot be confirmed in time, and when the holder's
// key is deleted or written by anyone else: the holder watches its key from its creation on.
//
// The Backend does not own the client: close it after every Elector using the Backend has
// returned from Run.
type Backend struct {
	cli    *clientv3.Client
	prefix string
	ttl    int64 // seconds
	log    *zap.Logger
}

var _ election.Backend = (*Backend)(nil)

// Option configures a Backend.
type Option interface{ apply(*Backend) }

type optionFunc func(*Backend)

func (f optionFunc) apply(b *Backend) { f(b) }

// WithTTL sets the lease TTL, rounded up to whole seconds (etcd's unit); default DefaultTTL.
// The server may raise it to its minimum (1.5 election timeouts, 2s with etcd's defaults); the
// granted TTL is what counts. Crash failover takes about the TTL plus up to 0.5s (the server
// checks for expired leases every 500ms).
func WithTTL(d time.Duration) Option {
	return optionFunc(func(b *Backend) { b.ttl = int64(math.Ceil(d.Seconds())) })
}

// WithPrefix sets the key prefix elections live under; default DefaultPrefix.
func WithPrefix(p string) Option {
	return optionFunc(func(b *Backend) { b.prefix = p })
}

// WithLogger sets the logger; default zap.NewNop().
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(b *Backend) {
		if l != nil {
			b.log = l
		}
	})
}

// New returns a Backend for the election called name on cli. It starts nothing.
func New(cli *clientv3.Client, name string, opts ...Option) (*Backend, error) {
	if cli == nil {
		return nil, errors.New("election/etcd: nil client")
	}
	if name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("election/etcd: election name %q: want non-empty, without '/'", name)
	}
	b := &Backend{cli: cli, prefix: DefaultPrefix, ttl: int64(DefaultTTL / time.Second), log: zap.NewNop()}
	for _, o := range opts {
		o.apply(b)
	}
	if b.ttl < 1 {
		return nil, fmt.Errorf("election/etcd: TTL %ds: want at least 1s", b.ttl)
	}
	if b.prefix == "" {
		return nil, errors.New("election/etcd: empty prefix")
	}
	b.prefix += name + "/"
	b.log = b.log.Named("election.etcd")
	return b, nil
}

// Prefix returns the key prefix of this election (every candidate's key is under it).
func (b *Backend) Prefix() string { return b.prefix }

// Campaign implements election.Backend.
//
// A Campaign that fails after granting its lease revokes it (waiting at most 2s); if that fails too
// (etcd unreachable), the error is an *election.UnreleasedError carrying the lease, whose Release
// the caller may try again.
func (b *Backend) Campaign(ctx context.Context, id string) (_ election.Lease, err error) {
	sent := time.Now()
	g, err := b.cli.Grant(ctx, b.ttl)
	if err != nil {
		return nil, fmt.Errorf("election/etcd: grant lease: %w", err)
	}
	l := newLease(b, g.ID, g.TTL, sent)
	ok := false
	defer func() {
		if !ok {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			if rerr := l.Release(rctx); rerr != nil {
				err = &election.UnreleasedError{Err: err, Lease: l, ReleaseErr: rerr}
			}
			cancel()
		}
	}()

	key := fmt.Sprintf("%s%016x", b.prefix, int64(g.ID))
	resp, err := b.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, id, clientv3.WithLease(g.ID))).
		Commit()
	if err != nil {
		return nil, fmt.Errorf("election/etcd: put candidate key: %w", err)
	}
	if !resp.Succeeded {
		return nil, fmt.Errorf("election/etcd: candidate key %s exists already", key)
	}
	token := resp.Header.Revision
	l.term = election.Term{ID: id, Token: uint64(token)}
	l.watch(key, token)

	for {
		// Still ours? Then who is just ahead of us?
		resp, err := b.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", token)).
			Then(clientv3.OpGet(b.prefix, clientv3.WithPrefix(), clientv3.WithMaxCreateRev(token-1),
				clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend), clientv3.WithLimit(1))).
			Commit()
		if err != nil {
			return nil, fmt.Errorf("election/etcd: check predecessors: %w", err)
		}
		if !resp.Succeeded {
			return nil, fmt.Errorf("election/etcd: candidate key %s gone: %w", key, election.ErrLeaseLost)
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			ok = true
			return l, nil
		}
		if err := b.waitDelete(ctx, l, string(kvs[0].Key)); err != nil {
			return nil, err
		}
	}
}

// waitDelete returns when key is gone, or the watch broke (the caller checks again). The watch
// starts at the server's current revision (so etcd serves it from its synced set, without the up
// to 100ms delay of catching up from an older revision), and key is read again once the watch
// exists, so a delete between the caller's read and the watch is not missed.
func (b *Backend) waitDelete(ctx context.Context, l *lease, key string) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := b.cli.Watch(wctx, key, clientv3.WithCreatedNotify(), clientv3.WithFilterPut())
	created := false
	for {
		select {
		case wr, open := <-wch:
			if !open || wr.Err() != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				// Broken watch (no leader, closed client): back off a little, check again.
				select {
				case <-time.After(100 * time.Millisecond):
					return nil
				case <-ctx.Done():
					return ctx.Err()
				case <-l.lost:
					return fmt.Errorf("election/etcd: %w", election.ErrLeaseLost)
				}
			}
			if wr.Created && !created {
				created = true
				resp, err := b.cli.Get(ctx, key, clientv3.WithCountOnly())
				if err != nil {
					return fmt.Errorf("election/etcd: read predecessor: %w", err)
				}
				if resp.Count == 0 {
					return nil
				}
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					return nil
				}
			}
		case <-l.lost:
			return fmt.Errorf("election/etcd: while waiting: %w", election.ErrLeaseLost)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Observe implements election.Backend: the leader is the key with the lowest creation revision
// under the election's prefix. A watch reports changes at once, and a read every TTL/3 confirms the
// leader while nothing changes. A leader that no read has confirmed for a TTL (the cluster lost its
// quorum, or this client is cut off from it) is not reported any more: Observe reports the zero
// Term ("no leader known") until a read succeeds again. This is the rule a leader applies to itself
// (it steps down when no renewal was confirmed for a TTL), so in a quorum loss the leader steps down
// and every observer stops naming it at about the same time. Observe returns nil when ctx ends,
// and no error before: it keeps watching and reading through outages.
func (b *Backend) Observe(ctx context.Context, fn func(election.Term)) error {
	ttl := time.Duration(b.ttl) * time.Second
	o := &observation{fn: fn, first: true}
	confirm := time.NewTicker(ttl / 3)
	defer confirm.Stop()
	stale := time.NewTimer(ttl)
	stale.Stop() // armed by each read that succeeds
	defer stale.Stop()
	var wch clientv3.WatchChan
	stopWatch := func() {}
	defer func() { stopWatch() }()
	var retry <-chan time.Time // after a failed read, read again soon rather than on the next tick
	read := func() {
		retry = nil
		if !b.read(ctx, o, stale, ttl) && ctx.Err() == nil {
			retry = time.After(100 * time.Millisecond)
		}
	}
	for {
		if wch == nil {
			// Watch first (from the current revision, served at once), then read on the created
			// notification: no change between the read and the watch can be missed.
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			stopWatch = cancel
			wch = b.cli.Watch(wctx, b.prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
		}
		select {
		case <-ctx.Done():
			return nil
		case wr, open := <-wch:
			if !open || wr.Err() != nil {
				// The watch broke (the member lost the cluster's leader, closed client): watch again
				// after a pause; the reads go on meanwhile.
				stopWatch()
				wch = nil
				select {
				case <-time.After(100 * time.Millisecond):
				case <-ctx.Done():
					return nil
				}
				continue
			}
			if wr.Created || len(wr.Events) > 0 {
				read()
			}
		case <-confirm.C:
			read()
		case <-retry:
			read()
		case <-stale.C:
			if !o.last.IsZero() {
				b.log.Warn("leader not confirmed for a TTL: reporting no leader", zap.String("leader", o.last.ID),
					zap.Uint64("token", o.last.Token), zap.Duration("ttl", ttl))
			}
			o.report(election.Term{})
		}
	}
}

// observation is what one Observe call reported.
type observation struct {
	fn        func(election.Term)
	first     bool
	last      election.Term
	confirmed time.Time // send time of the last read that succeeded
}

func (o *observation) report(t election.Term) {
	if o.first || t != o.last {
		o.first, o.last = false, t
		o.fn(t)
	}
}

// read reads the leader and reports it; a read that succeeds re-arms stale to fire a TTL after it
// was sent. A read waits at most TTL/3, and never past the moment stale fires. It reports whether
// the read succeeded.
func (b *Backend) read(ctx context.Context, o *observation, stale *time.Timer, ttl time.Duration) bool {
	sent := time.Now()
	deadline := sent.Add(ttl / 3)
	if s := o.confirmed.Add(ttl); !o.confirmed.IsZero() && s.After(sent) && s.Before(deadline) {
		deadline = s
	}
	rctx, cancel := context.WithDeadline(ctx, deadline)
	cur, err := b.leader(rctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			b.log.Debug("observe: read leader", zap.Error(err))
		}
		return false
	}
	o.confirmed = sent
	stale.Reset(time.Until(sent.Add(ttl)))
	o.report(cur)
	return true
}

// leader reads the current leader.
func (b *Backend) leader(ctx context.Context) (election.Term, error) {
	resp, err := b.cli.Get(ctx, b.prefix, append(clientv3.WithFirstCreate(), clientv3.WithPrefix())...)
	if err != nil {
		return election.Term{}, fmt.Errorf("election/etcd: read leader: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return election.Term{}, nil
	}
	kv := resp.Kvs[0]
	return election.Term{ID: string(kv.Value), Token: uint64(kv.CreateRevision)}, nil
}

// lease is one candidate's etcd lease, the goroutine renewing it, and (once the candidate's key
// exists) the goroutine watching that key.
type lease struct {
	b    *Backend
	id   clientv3.LeaseID
	term election.Term

	lost     chan struct{} // closed when the lease is known ended, or by Release
	lostOnce sync.Once
	stop     context.CancelFunc
	watch    func(key string, created int64) // starts watchKey; called once, before Release
	wg       sync.WaitGroup                  // the renewal and key-watch goroutines

	mu         sync.Mutex
	validUntil time.Time

	stopOnce sync.Once
	relMu    sync.Mutex // serializes Release's revokes
	revoked  bool       // the server confirmed the revoke (or no longer knew the lease)
}

func newLease(b *Backend, id clientv3.LeaseID, ttl int64, sent time.Time) *lease {
	ctx, cancel := context.WithCancel(context.Background())
	l := &lease{
		b: b, id: id,
		lost: make(chan struct{}), stop: cancel,
		validUntil: sent.Add(time.Duration(ttl) * time.Second),
	}
	l.watch = func(key string, created int64) { l.wg.Go(func() { l.watchKey(ctx, key, created) }) }
	l.wg.Go(func() { l.renew(ctx, time.Duration(ttl)*time.Second) })
	return l
}

func (l *lease) Term() election.Term   { return l.term }
func (l *lease) Lost() <-chan struct{} { return l.lost }

func (l *lease) ValidUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.validUntil
}

func (l *lease) markLost() { l.lostOnce.Do(func() { close(l.lost) }) }

// renew confirms the lease every ttl/3 (retrying every 100ms after a failure) until ctx ends, the
// server says the lease is gone, or ValidUntil passes without a confirmed renewal.
func (l *lease) renew(ctx context.Context, ttl time.Duration) {
	interval := ttl / 3
	wait := interval
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		valid := l.ValidUntil()
		if !time.Now().Before(valid) {
			l.markLost()
			return
		}
		sent := time.Now()
		cctx, cancel := context.WithDeadline(ctx, valid)
		resp, err := l.b.cli.KeepAliveOnce(cctx, l.id)
		cancel()
		switch {
		case err == nil && resp.TTL > 0:
			l.mu.Lock()
			if v := sent.Add(time.Duration(resp.TTL) * time.Second); v.After(l.validUntil) {
				l.validUntil = v
			}
			l.mu.Unlock()
			wait = interval
		case err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound):
			l.markLost()
			return
		default:
			if ctx.Err() != nil {
				return
			}
			l.b.log.Debug("renew lease", zap.Error(err), zap.Int64("lease", int64(l.id)))
			wait = 100 * time.Millisecond
		}
	}
}

// watchKey ends the lease (closes Lost) when the candidate's key, created at revision created, is
// deleted or written: this Backend never writes the key after creating it, so any event on it past
// its creation means someone else ended or took over the term (an operator deleting it, a revoke
// from elsewhere). The watch starts right after the creation, so no event can slip by. Whenever the
// watch ends otherwise (no cluster leader, history compacted, closed channel), the key is read,
// 100ms later and again every 100ms until a read succeeds: gone, or created or modified at another revision, ends
// the lease; else the watch goes on from the read's revision, so etcd does not replay the history
// since the key's creation. It returns when ctx ends or the lease has ended.
func (l *lease) watchKey(ctx context.Context, key string, created int64) {
	next := created + 1
	for {
		if l.watchFrom(ctx, key, next) {
			l.markLost()
			return
		}
		for {
			// A pause before each read, the first too: a watch that every member refuses at once
			// (no leader) while reads succeed would otherwise loop as fast as etcd answers.
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return
			}
			resp, err := l.b.cli.Get(ctx, key)
			if err == nil {
				if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != created || resp.Kvs[0].ModRevision != created {
					l.b.log.Warn("candidate key deleted or overwritten: term over", zap.String("key", key))
					l.markLost()
					return
				}
				next = resp.Header.Revision + 1
				break
			}
			if ctx.Err() == nil {
				l.b.log.Debug("read candidate key after its watch ended", zap.Error(err), zap.String("key", key))
			}
		}
	}
}

// watchFrom watches key from revision rev until an event on it (it reports true) or any other end
// of the watch: an error, a compaction refusal, ctx ending.
func (l *lease) watchFrom(ctx context.Context, key string, rev int64) bool {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range l.b.cli.Watch(wctx, key, clientv3.WithRev(rev)) {
		if wr.Err() != nil {
			return false
		}
		if len(wr.Events) > 0 {
			ev := wr.Events[0]
			l.b.log.Warn("candidate key deleted or overwritten: term over", zap.String("key", key),
				zap.Stringer("event", ev.Type), zap.Int64("revision", ev.Kv.ModRevision))
			return true
		}
	}
	return false
}

// Release stops renewing and revokes the lease, which deletes the candidate's key. Once a revoke
// succeeded it returns nil at once; after a failed one, calling it again revokes again (a server
// that was unreachable restores the lease, with a fresh TTL, when it comes back).
func (l *lease) Release(ctx context.Context) error {
	l.stopOnce.Do(func() {
		l.stop()
		l.wg.Wait()
		l.markLost()
	})
	l.relMu.Lock()
	defer l.relMu.Unlock()
	if l.revoked {
		return nil
	}
	if _, err := l.b.cli.Revoke(ctx, l.id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("election/etcd: revoke lease: %w", err)
	}
	l.revoked = true
	return nil
}
