package scatter_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/scatter"
)

// An EndpointsFunc over a fixed list (nil change channel) never changes: the set is built once,
// so that its statistics and sketch accumulate.
func TestDynamicNilChannelNeverChanges(t *testing.T) {
	var built atomic.Int32
	eps := func() ([]string, <-chan struct{}) { return []string{"a", "b"}, nil }
	d, err := scatter.NewDynamicReplicaSet(eps, func(string) scatter.Leaf[int, int] {
		built.Add(1)
		return scatter.LeafFunc[int, int](func(context.Context, int) (int, error) { return 1, nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	first, err := d.Current()
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := d.Call(t.Context(), 0); err != nil {
			t.Fatal(err)
		}
	}
	rs, _ := d.Current()
	if rs != first || built.Load() != 2 {
		t.Errorf("a nil change channel rebuilt the set (same set %v, leaves built %d, want 2)", rs == first, built.Load())
	}
	if n := rs.Stats()[0].Samples + rs.Stats()[1].Samples; n != 5 {
		t.Errorf("after 5 calls the set has %d samples", n)
	}
}

// An address newLeaf refuses is skipped: the set is built from the others, newLeaf is asked once
// per change (not on every call), and the refusal is logged once however long it stays refused.
// When it refuses every new address, the old replicas keep serving until the next change.
func TestDynamicRefusedAddress(t *testing.T) {
	ch := make(chan struct{})
	addrs := []string{"a"}
	var cur <-chan struct{} = ch
	var mu sync.Mutex
	eps := func() ([]string, <-chan struct{}) { mu.Lock(); defer mu.Unlock(); return addrs, cur }
	change := func(to ...string) {
		mu.Lock()
		old := ch
		ch = make(chan struct{})
		addrs, cur = to, ch
		mu.Unlock()
		close(old)
	}
	var asked atomic.Int32
	refuse := map[string]bool{"bad": true, "new": true}
	d, err := scatter.NewDynamicReplicaSet(eps, func(a string) scatter.Leaf[int, string] {
		asked.Add(1)
		if refuse[a] {
			return nil
		}
		return scatter.LeafFunc[int, string](func(context.Context, int) (string, error) { return a, nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.WarnLevel)
	d.Log = zap.New(core)
	if got, err := d.Call(t.Context(), 0); got != "a" {
		t.Fatalf("got %q %v", got, err)
	}
	calls := func(want string) {
		t.Helper()
		for range 100 {
			if got, err := d.Call(t.Context(), 0); got != want || err != nil {
				t.Fatalf("Call = %q, %v; want %q", got, err, want)
			}
		}
	}
	change("a", "bad")
	calls("a")
	if n := asked.Swap(0); n != 2 {
		t.Errorf("newLeaf asked %d times over 100 calls after one change, want 2 (a, then bad once)", n)
	}
	change("bad", "b")
	calls("b")
	change("new") // every new address refused: b keeps serving
	calls("b")
	refuse["new"] = false
	change("new")
	calls("new")
	if n := logs.FilterField(zap.String("addr", "bad")).Len(); n != 1 {
		t.Errorf("refused address logged %d times, want 1", n)
	}
	if n := logs.FilterField(zap.String("addr", "new")).Len(); n != 1 {
		t.Errorf("address refused at one change logged %d times, want 1", n)
	}
}

// WithCanary says a failed canary makes Do return ErrCanary, also under WithFailFast.
func TestCanaryFailFast(t *testing.T) {
	boom := errors.New("query of death")
	leaves := make([]scatter.Leaf[int, int], 4)
	var calls atomic.Int32
	for i := range leaves {
		leaves[i] = scatter.LeafFunc[int, int](func(context.Context, int) (int, error) { calls.Add(1); return 0, boom })
	}
	f, err := scatter.New(leaves, sum, scatter.WithCanary(1, time.Second), scatter.WithFailFast())
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.Do(t.Context(), 0)
	f.Wait()
	if !errors.Is(err, scatter.ErrCanary) || !errors.Is(err, boom) || res.Why != scatter.EndCanary {
		t.Errorf("canary failed under fail-fast: err %v (why %v), want ErrCanary wrapping its error", err, res.Why)
	}
	if calls.Load() != 1 {
		t.Errorf("%d leaves called, want the canary only", calls.Load())
	}
}

type countRT struct{ n atomic.Int32 }

func (c *countRT) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// HTTPLeaf.Client's doc: nil means a client made by NewHTTPClient, not http.DefaultClient
// (DefaultTransport keeps 2 idle connections per host).
func TestHTTPLeafNilClient(t *testing.T) {
	srv := httptest.NewServer(&scatter.LeafHandler[int, int]{Func: func(_ context.Context, n int) (int, error) { return n, nil }})
	defer srv.Close()
	rt := &countRT{}
	old := http.DefaultClient.Transport
	http.DefaultClient.Transport = rt
	defer func() {
		http.DefaultClient.Transport = old
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	}()
	l := &scatter.HTTPLeaf[int, int]{URL: srv.URL}
	if got, err := l.Call(t.Context(), 7); err != nil || got != 7 {
		t.Fatalf("Call = %d, %v", got, err)
	}
	if rt.n.Load() != 0 {
		t.Errorf("a nil-Client HTTPLeaf went through http.DefaultClient (%d round trips)", rt.n.Load())
	}
}

// A shard whose goroutine had not reached its leaf when a quorum ended the fan-out is skipped:
// 0 attempts, StatusSkipped.
func TestNeverCalledReportedSkipped(t *testing.T) {
	const n = 200
	var calls atomic.Int32
	leaves := make([]scatter.Leaf[int, int], n)
	for i := range leaves {
		leaves[i] = scatter.LeafFunc[int, int](func(ctx context.Context, _ int) (int, error) {
			calls.Add(1)
			if i == 0 {
				return 1, nil
			}
			<-ctx.Done()
			return 0, ctx.Err()
		})
	}
	f, err := scatter.New(leaves, sum, scatter.WithQuorum(1))
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		calls.Store(0)
		res, err := f.Do(t.Context(), 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Wait()
		attempts := 0
		for _, s := range res.Slots {
			attempts += s.Attempts
			if s.Status == scatter.StatusSkipped && s.Attempts != 0 {
				t.Fatalf("a skipped shard reports %d attempts", s.Attempts)
			}
			if s.Status != scatter.StatusSkipped && s.Attempts == 0 {
				t.Fatalf("a %v shard reports no attempt", s.Status)
			}
		}
		if c := int(calls.Load()); attempts > c {
			t.Fatalf("reported attempts %d; leaf calls made %d", attempts, c)
		}
	}
}

// The CoverageError keeps every distinct leaf error, each matching with errors.Is.
func TestCoverageErrorKeepsEveryCause(t *testing.T) {
	e1, e2 := errors.New("disk full"), errors.New("bad query")
	leaves := []scatter.Leaf[int, int]{
		scatter.LeafFunc[int, int](func(context.Context, int) (int, error) { return 0, e1 }),
		scatter.LeafFunc[int, int](func(context.Context, int) (int, error) { return 0, e2 }),
		scatter.LeafFunc[int, int](func(context.Context, int) (int, error) { return 0, e2 }),
	}
	f, err := scatter.New(leaves, sum)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Do(t.Context(), 0)
	if !errors.Is(err, scatter.ErrShortCoverage) || !errors.Is(err, e1) || !errors.Is(err, e2) {
		t.Errorf("err %v: errors.Is(e1)=%v errors.Is(e2)=%v; want both", err, errors.Is(err, e1), errors.Is(err, e2))
	}
	if want := "scatter: 0 of 3 shards answered, 1 required: disk full; bad query"; err == nil || err.Error() != want {
		t.Errorf("err %v, want %q", err, want)
	}
}

// RootHandler: every answer carries X-Scatter-Shards, also a request refused before a fan-out.
func TestRootHandlerShardsHeader(t *testing.T) {
	f, err := scatter.New([]scatter.Leaf[int, int]{scatter.LeafFunc[int, int](func(context.Context, int) (int, error) { return 1, nil })}, sum)
	if err != nil {
		t.Fatal(err)
	}
	h := &scatter.RootHandler[int, int, int]{Fanout: f}
	for _, r := range []*http.Request{httptest.NewRequest("GET", "/", nil), httptest.NewRequest("POST", "/", nil)} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code/100 != 4 || w.Header().Get(scatter.HeaderShards) != "1" || w.Header().Get(scatter.HeaderAnswered) != "" {
			t.Errorf("%s: %d with headers %v; want a 4xx with %s: 1 and no other", r.Method, w.Code, w.Header(), scatter.HeaderShards)
		}
	}
}

// A leaf error marked BadRequest is a 400 with its reason from a LeafHandler, and a replica set
// returns it without trying another replica (with hedging or without).
func TestBadRequestNotRetried(t *testing.T) {
	var hits atomic.Int32
	h := &scatter.LeafHandler[int, int]{Func: func(_ context.Context, n int) (int, error) {
		hits.Add(1)
		if n <= 0 {
			return 0, scatter.BadRequest(errors.New("n must be positive"))
		}
		return n, nil
	}}
	var urls []string
	for range 3 {
		s := httptest.NewServer(h)
		t.Cleanup(s.Close)
		urls = append(urls, s.URL)
	}
	client := scatter.NewHTTPClient()
	t.Cleanup(client.CloseIdleConnections)
	reps := make([]scatter.Leaf[int, int], len(urls))
	for i, u := range urls {
		reps[i] = scatter.NewHTTPLeaf[int, int](u, client)
	}
	rs, err := scatter.NewReplicaSet(reps...)
	if err != nil {
		t.Fatal(err)
	}
	_, err = rs.Call(t.Context(), 0)
	var he *scatter.HTTPStatusError
	if !errors.As(err, &he) || he.Code != http.StatusBadRequest || he.Message != "n must be positive" || !errors.Is(err, scatter.ErrBadRequest) {
		t.Fatalf("Call = %v (%#v); want a 400 matching ErrBadRequest with the reason", err, he)
	}
	if n := hits.Swap(0); n != 1 {
		t.Errorf("a bad request was sent to %d replicas, want 1", n)
	}
	f, err := scatter.New([]scatter.Leaf[int, int]{rs}, sum, scatter.WithHedge(scatter.Hedge{Delay: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Do(t.Context(), 0); !errors.Is(err, scatter.ErrBadRequest) {
		t.Errorf("hedged fan-out: %v, want ErrBadRequest", err)
	}
	f.Wait()
	if n := hits.Load(); n != 1 {
		t.Errorf("a hedged fan-out sent a bad request to %d replicas, want 1", n)
	}
	for _, code := range []int{http.StatusBadRequest, http.StatusNotFound, http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError} {
		if errors.Is(&scatter.HTTPStatusError{Code: code}, scatter.ErrBadRequest) {
			t.Errorf("a %d answer without %s blames the request", code, scatter.HeaderBadRequest)
		}
	}
}

// A replica answering 404 at once (no such path or index: misrouted, still loading, a default
// backend) is a failing replica, not a refused request: every call fails over to the healthy one,
// and the broken replica is not ranked first for its fast answers. So is a 400 from something
// that is not a LeafHandler refusing the request (no HeaderBadRequest).
func TestHTTP4xxReplicaFailsOver(t *testing.T) {
	for _, broken := range []http.Handler{
		http.NotFoundHandler(),
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "bad gateway config", http.StatusBadRequest)
		}),
	} {
		bad := httptest.NewServer(broken)
		good := httptest.NewServer(&scatter.LeafHandler[int, int]{Func: func(ctx context.Context, q int) (int, error) {
			time.Sleep(2 * time.Millisecond)
			return q, nil
		}})
		client := scatter.NewHTTPClient()
		rs, err := scatter.NewReplicaSet[int, int](
			&scatter.HTTPLeaf[int, int]{URL: bad.URL + "/search", Client: client},
			&scatter.HTTPLeaf[int, int]{URL: good.URL + "/search", Client: client},
		)
		if err != nil {
			t.Fatal(err)
		}
		f, err := scatter.New([]scatter.Leaf[int, int]{rs}, sum, scatter.WithTimeout(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		failed := 0
		var last error
		for range 200 {
			if _, err := f.Do(t.Context(), 1); err != nil {
				failed++
				last = err
			}
		}
		f.Wait()
		client.CloseIdleConnections()
		bad.Close()
		good.Close()
		if failed > 0 {
			t.Errorf("%d of 200 fan-outs failed although replica 1 is healthy; last %v; stats %+v", failed, last, rs.Stats())
		}
	}
}

// A non-JSON error body is cut to 200 bytes on a rune boundary, without surrounding space.
func TestHTTPStatusMessageCut(t *testing.T) {
	for body, want := range map[string]string{
		"oops\n": "oops",
		strings.Repeat("a", 199) + "é and more\n": strings.Repeat("a", 199),
		strings.Repeat("b", 198) + "é and more":   strings.Repeat("b", 198) + "é",
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, body)
		}))
		l := scatter.NewHTTPLeaf[int, int](srv.URL, srv.Client())
		_, err := l.Call(t.Context(), 1)
		srv.Close()
		var he *scatter.HTTPStatusError
		if !errors.As(err, &he) || he.Message != want || !utf8.ValidString(he.Message) {
			t.Errorf("body %q: %v, want message %q", body, err, want)
		}
	}
}

// A Burst in (0, 1) would never allow a hedge: New refuses it.
func TestHedgeBurstBelowOne(t *testing.T) {
	leaf := scatter.LeafFunc[int, int](func(context.Context, int) (int, error) { return 1, nil })
	for _, burst := range []float64{0.5, math.NaN()} {
		var ce *scatter.ConfigError
		if _, err := scatter.New([]scatter.Leaf[int, int]{leaf}, sum, scatter.WithHedge(scatter.Hedge{Delay: time.Millisecond, Burst: burst})); !errors.As(err, &ce) {
			t.Errorf("Burst %v: New = %v, want a *ConfigError", burst, err)
		}
	}
	if _, err := scatter.New([]scatter.Leaf[int, int]{leaf}, sum, scatter.WithHedge(scatter.Hedge{Delay: time.Millisecond, Burst: 1})); err != nil {
		t.Errorf("Burst 1: %v", err)
	}
}

// A set with one replica that always fails at once and one healthy, in a fan-out whose hedge
// budget is spent: the failover after the failing replica's try is not budgeted (the set chose
// that try), so no request fails while the healthy replica answers.
func TestFailingReplicaTryNotBudgeted(t *testing.T) {
	rs, err := scatter.NewReplicaSet[int, int](
		scatter.LeafFunc[int, int](func(context.Context, int) (int, error) { return 0, errors.New("down") }),
		scatter.LeafFunc[int, int](func(context.Context, int) (int, error) { return 1, nil }),
	)
	if err != nil {
		t.Fatal(err)
	}
	f, err := scatter.New([]scatter.Leaf[int, int]{rs}, sum,
		scatter.WithHedge(scatter.Hedge{Delay: time.Hour, Budget: 0.000001, Burst: 1}))
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	const n = 20000
	for range n {
		if _, err := f.Do(t.Context(), 0); err != nil {
			failed++
		}
	}
	f.Wait()
	if failed > 0 {
		t.Errorf("%d of %d fan-outs failed without trying the healthy replica", failed, n)
	}
}

// A CoverageError keeps errors that read alike but differ (e and BadRequest(e)), and a cause
// matching ErrBadRequest even past the cap of 8 distinct ones.
func TestCoverageErrorKeepsBadRequest(t *testing.T) {
	e := errors.New("index missing")
	leaves := []scatter.Leaf[int, int]{
		scatter.LeafFunc[int, int](func(context.Context, int) (int, error) { return 0, e }),
		scatter.LeafFunc[int, int](func(context.Context, int) (int, error) { return 0, scatter.BadRequest(e) }),
	}
	f, err := scatter.New(leaves, sum)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Do(t.Context(), 0); !errors.Is(err, scatter.ErrBadRequest) || !errors.Is(err, e) {
		t.Errorf("shards failed with e and BadRequest(e): %v does not match both", err)
	}
	leaves = nil
	for i := range 9 {
		leaves = append(leaves, scatter.LeafFunc[int, int](func(context.Context, int) (int, error) {
			if i == 8 {
				return 0, scatter.BadRequest(errors.New("k out of range"))
			}
			return 0, fmt.Errorf("shard %d down", i)
		}))
	}
	if f, err = scatter.New(leaves, sum); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Do(t.Context(), 0); !errors.Is(err, scatter.ErrBadRequest) {
		t.Errorf("9th shard refused the request: %v does not match ErrBadRequest", err)
	}
}

// Every leaf refuses the request as bad: the root answers 400 with the reason, not 503.
func TestRootBadRequestIs400(t *testing.T) {
	bad := scatter.LeafFunc[int, int](func(context.Context, int) (int, error) { return 0, scatter.BadRequest(errors.New("k out of range")) })
	f, err := scatter.New([]scatter.Leaf[int, int]{bad, bad}, sum)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(&scatter.RootHandler[int, int, int]{Fanout: f})
	defer srv.Close()
	res, err := http.Post(srv.URL, "application/json", strings.NewReader("5"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "k out of range") || res.Header.Get(scatter.HeaderAnswered) != "0" {
		t.Errorf("root answered %d %q (answered %q) to a request every leaf refused, want 400 with the reason", res.StatusCode, b, res.Header.Get(scatter.HeaderAnswered))
	}
}

// A Burst too large for the token bucket is refused; a Budget of +Inf means no cap, so hedges
// are sent.
func TestHedgeHugeBurstBudget(t *testing.T) {
	leaf := scatter.LeafFunc[int, int](func(context.Context, int) (int, error) { return 1, nil })
	for _, burst := range []float64{math.Inf(1), 1e13} {
		var ce *scatter.ConfigError
		if _, err := scatter.New([]scatter.Leaf[int, int]{leaf}, sum, scatter.WithHedge(scatter.Hedge{Delay: time.Millisecond, Burst: burst})); !errors.As(err, &ce) {
			t.Errorf("Burst %v: New = %v, want a *ConfigError", burst, err)
		}
	}
	for _, budget := range []float64{math.Inf(1), 1e13} {
		var calls atomic.Int32
		rs, err := scatter.NewReplicaSet[int, int](
			scatter.LeafFunc[int, int](func(ctx context.Context, _ int) (int, error) {
				if calls.Add(1) == 1 {
					<-ctx.Done() // the first attempt stalls: only a hedge answers
				}
				return 1, nil
			}),
			leaf,
		)
		if err != nil {
			t.Fatal(err)
		}
		f, err := scatter.New([]scatter.Leaf[int, int]{rs}, sum, scatter.WithSelection(scatter.SelectRoundRobin), scatter.WithTimeout(5*time.Second),
			scatter.WithHedge(scatter.Hedge{Delay: time.Millisecond, Budget: budget, Burst: 1}))
		if err != nil {
			t.Fatalf("Budget %v: %v", budget, err)
		}
		for range 3 {
			if _, err := f.Do(t.Context(), 0); err != nil {
				t.Errorf("Budget %v: %v", budget, err)
			}
		}
		f.Wait()
		_, _, rows := f.Statusz()
		for _, r := range rows {
			if r[0] == "hedge tokens" && r[1] != "+Inf" {
				t.Errorf("Budget %v: hedge tokens %s, want +Inf (no cap)", budget, r[1])
			}
		}
	}
}
