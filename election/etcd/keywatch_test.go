package etcd_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podblocks/podblocks/election"
	"github.com/podblocks/podblocks/election/etcd"
	"github.com/podblocks/podblocks/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// keyTTL is long enough that a lease expiry can never be what ends a term in these tests.
const keyTTL = 30 * time.Second

// keyLeader is one Elector of the key-watch tests, with the events of its leader func.
type keyLeader struct {
	e       *election.Elector
	started chan election.Term
	ended   chan election.Term
	stop    func()
}

func startKeyLeader(t *testing.T, endpoint, name, id string) *keyLeader {
	t.Helper()
	cli := etcdtest.NewClient(t, endpoint)
	b, err := etcd.New(cli, name, etcd.WithTTL(keyTTL))
	if err != nil {
		t.Fatal(err)
	}
	k := &keyLeader{started: make(chan election.Term, 4), ended: make(chan election.Term, 4)}
	k.e, err = election.New(b, id, func(ctx context.Context, tm election.Term) error {
		k.started <- tm
		<-ctx.Done()
		k.ended <- tm
		return nil
	}, election.WithReleaseTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.e.Run(ctx) }()
	k.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run %s: %v", id, err)
		}
	}
	return k
}

func recv(t *testing.T, ch <-chan election.Term, within time.Duration, what string) election.Term {
	t.Helper()
	select {
	case tm := <-ch:
		return tm
	case <-time.After(within):
		t.Fatalf("%s: nothing within %v", what, within)
		return election.Term{}
	}
}

// firstKey returns the key with the lowest creation revision under prefix: the leader's.
func firstKey(t *testing.T, admin *clientv3.Client, prefix string) string {
	t.Helper()
	resp, err := admin.Get(context.Background(), prefix, append(clientv3.WithFirstCreate(), clientv3.WithPrefix())...)
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatalf("read the leader's key: %v (%d keys)", err, len(resp.Kvs))
	}
	return string(resp.Kvs[0].Key)
}

// TestLeaderKeyDeletedOrOverwrittenEndsTerm deletes (or overwrites) the leader's key behind its
// back, as an operator would to force a failover, and checks that the term ends at once: the
// leader func's ctx ends, Leader stops saying self, and the next candidate leads with a higher
// token. The TTL is 30s, so nothing but the key's fate can end the term within the 10s allowed.
func TestLeaderKeyDeletedOrOverwrittenEndsTerm(t *testing.T) {
	c := etcdtest.NewServer(t)
	admin := c.Client(t)
	for _, op := range []string{"delete", "overwrite"} {
		done := map[string]string{"delete": "deleted", "overwrite": "overwritten"}[op]
		t.Run(op, func(t *testing.T) {
			name := fmt.Sprintf("key-%s-%d", op, elections.Add(1))
			a := startKeyLeader(t, c.Endpoint(0), name, "a")
			defer a.stop()
			first := recv(t, a.started, 30*time.Second, "a's first term")
			b := startKeyLeader(t, c.Endpoint(0), name, "b")
			defer b.stop()
			waitCandidates(t, admin, etcd.DefaultPrefix+name+"/", 2)

			key := firstKey(t, admin, etcd.DefaultPrefix+name+"/")
			var err error
			if op == "delete" {
				_, err = admin.Delete(context.Background(), key)
			} else {
				_, err = admin.Put(context.Background(), key, "intruder")
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := recv(t, a.ended, 10*time.Second, "a's term ending after its key was "+done); got != first {
				t.Fatalf("ended term %+v, want %+v", got, first)
			}
			if l := a.e.Leader(); l.Self {
				t.Fatalf("a.Leader() = %+v after its term ended", l)
			}
			if op == "delete" {
				// b's predecessor is gone: b leads.
				if got := recv(t, b.started, 10*time.Second, "b's term"); got.Token <= first.Token {
					t.Fatalf("b's token %d not above a's %d", got.Token, first.Token)
				}
			}
		})
	}
}

// TestLeaderKeyDeletedWhileWatchDownAndCompacted cuts the leader's connection while its key is
// deleted and the history compacted past the deletion, so the resumed watch is refused as
// compacted: the leader must read its key, find it gone, and end the term.
func TestLeaderKeyDeletedWhileWatchDownAndCompacted(t *testing.T) {
	c := etcdtest.NewServer(t)
	admin := c.Client(t)
	proxy := etcdtest.NewProxy(t, strings.TrimPrefix(c.Endpoint(0), "http://"))
	name := fmt.Sprintf("key-compact-%d", elections.Add(1))
	a := startKeyLeader(t, proxy.URL(), name, "a")
	defer a.stop()
	first := recv(t, a.started, 30*time.Second, "a's first term")

	key := firstKey(t, admin, etcd.DefaultPrefix+name+"/")
	proxy.Pause()
	if _, err := admin.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	resp, err := admin.Put(context.Background(), "/other", "x") // some history past the delete
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Compact(context.Background(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	proxy.CloseConns() // what the server sent while paused is lost with the connections
	proxy.Resume()
	if got := recv(t, a.ended, 15*time.Second, "a's term ending after its key was deleted and compacted"); got != first {
		t.Fatalf("ended term %+v, want %+v", got, first)
	}
	if l := a.e.Leader(); l.Self {
		t.Fatalf("a.Leader() = %+v after its term ended", l)
	}
}

// TestReleaseAfterFailedRevokeRevokes: a Release that could not reach the server does not stick:
// calling Release again once the server answers revokes the lease and deletes the key.
func TestReleaseAfterFailedRevokeRevokes(t *testing.T) {
	c := etcdtest.NewServer(t)
	admin := c.Client(t)
	proxy := etcdtest.NewProxy(t, strings.TrimPrefix(c.Endpoint(0), "http://"))
	b, err := etcd.New(etcdtest.NewClient(t, proxy.URL()), fmt.Sprintf("release-%d", elections.Add(1)), etcd.WithTTL(keyTTL))
	if err != nil {
		t.Fatal(err)
	}
	l, err := b.Campaign(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	proxy.Pause()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err = l.Release(ctx)
	cancel()
	if err == nil {
		t.Fatal("Release through a paused connection succeeded")
	}
	proxy.CloseConns()
	proxy.Resume()
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Release(ctx); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	resp, err := admin.Get(context.Background(), b.Prefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Fatalf("%d candidate keys left after the second Release, want 0", resp.Count)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("third Release: %v", err)
	}
}

// breakingWatcher records the revision each watch starts at, and closes every watch's channel
// when told to, as the client does when the server cancels a watch (no cluster leader).
type breakingWatcher struct {
	clientv3.Watcher

	mu      sync.Mutex
	revs    map[string][]int64 // key → the start revision of each watch on it
	breakCh chan struct{}      // closed by breakAll
}

func (w *breakingWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	w.mu.Lock()
	w.revs[key] = append(w.revs[key], clientv3.OpGet(key, opts...).Rev())
	broken := w.breakCh
	w.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	in := w.Watcher.Watch(ctx, key, opts...)
	out := make(chan clientv3.WatchResponse)
	go func() {
		defer close(out)
		defer cancel()
		for {
			select {
			case wr, open := <-in:
				if !open {
					return
				}
				select {
				case out <- wr:
				case <-broken:
					return
				}
			case <-broken:
				return
			}
		}
	}()
	return out
}

func (w *breakingWatcher) breakAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	close(w.breakCh)
	w.breakCh = make(chan struct{})
}

func (w *breakingWatcher) starts(key string) []int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.revs[key])
}

// leadBehindBreakingWatcher makes a candidate lead on a fresh etcd through a client whose watches
// go through a breakingWatcher, and returns an admin client, the watcher, the lease and its key.
func leadBehindBreakingWatcher(t *testing.T) (*clientv3.Client, *breakingWatcher, election.Lease, string) {
	t.Helper()
	c := etcdtest.NewServer(t)
	admin := c.Client(t)
	cli := etcdtest.NewClient(t, c.Endpoint(0))
	w := &breakingWatcher{Watcher: cli.Watcher, revs: map[string][]int64{}, breakCh: make(chan struct{})}
	cli.Watcher = w
	b, err := etcd.New(cli, fmt.Sprintf("key-rewatch-%d", elections.Add(1)), etcd.WithTTL(keyTTL))
	if err != nil {
		t.Fatal(err)
	}
	l, err := b.Campaign(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Release(context.Background()) })
	return admin, w, l, firstKey(t, admin, b.Prefix())
}

// TestBrokenKeyWatchResumesFromNow: when the watch on the leader's key ends (here: its channel
// closed), the key is read and the watch resumes from the read's revision, not from the key's
// creation (which made etcd replay, on every break, all the history since the key was created);
// the resumed watch still ends the term when the key is deleted.
func TestBrokenKeyWatchResumesFromNow(t *testing.T) {
	admin, w, l, key := leadBehindBreakingWatcher(t)
	if got, want := w.starts(key), []int64{int64(l.Term().Token) + 1}; !slices.Equal(got, want) {
		t.Fatalf("key watch started at %v, want %v", got, want)
	}
	var last int64
	for i := range 20 { // history past the key's creation
		resp, err := admin.Put(context.Background(), fmt.Sprintf("/other/%d", i), "x")
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Header.Revision
	}

	w.breakAll()
	deadline := time.Now().Add(10 * time.Second)
	for len(w.starts(key)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("key not watched again within 10s of the watch ending: starts %v", w.starts(key))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := w.starts(key)[1]; got <= last {
		t.Fatalf("watch resumed at revision %d, want past %d (the last write before it ended)", got, last)
	}
	select {
	case <-l.Lost():
		t.Fatal("lease lost after its key watch ended, with the key untouched")
	default:
	}
	if _, err := admin.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("lease not lost within 10s of its key being deleted after the watch resumed")
	}
}

// TestKeyWatchBreaksArePaced: when every watch on the leader's key ends at once (a member that
// refuses watches for want of a leader, while reads still succeed), the key is watched and read
// again at most about ten times a second, not as fast as etcd answers (thousands a second).
func TestKeyWatchBreaksArePaced(t *testing.T) {
	_, w, l, key := leadBehindBreakingWatcher(t)
	w.mu.Lock()
	close(w.breakCh) // not made again: every watch from now on ends at once
	w.mu.Unlock()
	time.Sleep(100 * time.Millisecond)
	before := len(w.starts(key))
	time.Sleep(time.Second)
	if n := len(w.starts(key)) - before; n > 30 {
		t.Errorf("%d key watches (each followed by a read) in 1s while every watch ends at once, want at most about 10", n)
	}
	select {
	case <-l.Lost():
		t.Fatal("lease lost while its key was untouched")
	default:
	}
}
