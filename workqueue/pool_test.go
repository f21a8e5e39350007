package workqueue_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/promscrape"
	"github.com/podblocks/podblocks/workqueue"
)

func mustMemory(t *testing.T, opts ...workqueue.Option) *workqueue.Memory {
	t.Helper()
	q, err := workqueue.NewMemory(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// runPool runs p until stop is called; stop returns Run's error.
func runPool(t *testing.T, p *workqueue.Pool) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// itemsTotal returns podblocks_workqueue_items_total{outcome=outcome} from reg, or -1 without it.
func itemsTotal(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "podblocks_workqueue_items_total" {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

func TestPoolHandlesEveryItem(t *testing.T) {
	q := mustMemory(t)
	reg := prometheus.NewRegistry()
	var mu sync.Mutex
	var got []string
	p, err := workqueue.NewPool(q, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
		mu.Lock()
		got = append(got, string(it.Payload))
		mu.Unlock()
		return nil
	}), workqueue.WithConcurrency(4), workqueue.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	stop := runPool(t, p)
	var want []string
	for i := range 100 {
		want = append(want, fmt.Sprintf("%03d", i))
		q.Add(context.Background(), []byte(want[i]), workqueue.AddOptions{})
	}
	await.True(t, "100 acks, in the counts and the metrics, and none in flight", 20*time.Second, func() bool {
		return p.Counts().Acked == 100 && itemsTotal(t, reg, "acked") == 100 &&
			slices.Equal(promscrape.Lines(t, reg, "podblocks_workqueue_in_flight_items "), []string{"podblocks_workqueue_in_flight_items 0"})
	})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("handled payloads (-want +got):\n%s", diff)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "podblocks_workqueue_attempt_number": // every item on its first attempt
			h := mf.GetMetric()[0].GetHistogram()
			if h.GetSampleCount() != 100 || h.GetSampleSum() != 100 || h.GetBucket()[0].GetUpperBound() != 1 || h.GetBucket()[0].GetCumulativeCount() != 100 {
				t.Errorf("attempt histogram %v, want 100 samples of 1", h)
			}
		case "podblocks_workqueue_handle_duration_seconds":
			h := mf.GetMetric()[0].GetHistogram()
			b := h.GetBucket()
			if h.GetSampleCount() != 100 || len(b) != 10 || b[len(b)-1].GetCumulativeCount() != 100 {
				t.Errorf("duration histogram %v, want 100 samples within 10 buckets", h)
			}
		case "podblocks_workqueue_in_flight_items":
			if v := mf.GetMetric()[0].GetGauge().GetValue(); v != 0 {
				t.Errorf("in-flight gauge %v once every item is acked, want 0", v)
			}
		}
	}
	_, header, rows := p.Statusz()
	if diff := cmp.Diff([]string{"acked", "100"}, rows[2]); diff != "" || len(header) != 2 {
		t.Errorf("Statusz acked row (-want +got):\n%s", diff)
	}
}

func TestPoolPanicRetriedThenBuried(t *testing.T) {
	q := mustMemory(t)
	var mu sync.Mutex
	var attempts []int
	p, err := workqueue.NewPool(q, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
		mu.Lock()
		attempts = append(attempts, it.Attempt)
		mu.Unlock()
		panic("boom")
	}), workqueue.WithPoolMaxAttempts(3), workqueue.WithBackoff(func(int) time.Duration { return 10 * time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	stop := runPool(t, p)
	q.Add(context.Background(), []byte("poison"), workqueue.AddOptions{})
	await.True(t, "a dead letter", 20*time.Second, func() bool { s, _ := q.Stats(context.Background()); return s.Dead == 1 })
	stop()
	if diff := cmp.Diff([]int{1, 2, 3}, attempts); diff != "" {
		t.Errorf("attempts (-want +got):\n%s", diff)
	}
	dead, _ := q.Dead(context.Background(), 1)
	if len(dead) != 1 || !strings.Contains(dead[0].Reason, "panic: boom") || string(dead[0].Payload) != "poison" {
		t.Errorf("dead letters %+v, want the poison item with a panic reason", dead)
	}
	if c := p.Counts(); c.Retried != 2 || c.Buried != 1 {
		t.Errorf("counts %+v, want 2 retried and 1 buried", c)
	}
}

// A buried item is gone for good: the rate limiter must not keep its failures (a keyless item's
// history is kept by its ID, so it would grow with every dead letter).
func TestPoolLimiterForgetsBuriedItems(t *testing.T) {
	q := mustMemory(t)
	lim := workqueue.NewItemExponentialLimiter(time.Millisecond, 10*time.Millisecond)
	p, _ := workqueue.NewPool(q, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
		return errors.New("fails")
	}), workqueue.WithPoolMaxAttempts(3), workqueue.WithRateLimiter(lim))
	stop := runPool(t, p)
	id, _ := q.Add(context.Background(), []byte("x"), workqueue.AddOptions{})
	await.True(t, "a dead letter", 20*time.Second, func() bool { s, _ := q.Stats(context.Background()); return s.Dead == 1 })
	stop()
	if n := lim.Retries(id); n != 0 {
		t.Errorf("limiter keeps %d failures of the buried item %s, want none", n, id)
	}
	if c := p.Counts(); c.Retried != 2 || c.Buried != 1 {
		t.Errorf("counts %+v, want 2 retried and 1 buried", c)
	}
}

func TestPoolPermanentErrorBuriesAtOnce(t *testing.T) {
	q := mustMemory(t)
	p, _ := workqueue.NewPool(q, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
		return workqueue.Permanent(errors.New("bad input"))
	}))
	stop := runPool(t, p)
	q.Add(context.Background(), []byte("x"), workqueue.AddOptions{})
	await.True(t, "a dead letter", 20*time.Second, func() bool { s, _ := q.Stats(context.Background()); return s.Dead == 1 })
	stop()
	if c := p.Counts(); c.Retried != 0 || c.Buried != 1 {
		t.Errorf("counts %+v, want 0 retried and 1 buried", c)
	}
}

func TestPoolExtendsLeaseWhileHandling(t *testing.T) {
	t.Parallel()
	q := mustMemory(t, workqueue.WithLeaseDuration(2*time.Second))
	var mu sync.Mutex
	var attempts []int
	p, _ := workqueue.NewPool(q, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
		mu.Lock()
		attempts = append(attempts, it.Attempt)
		mu.Unlock()
		select {
		case <-time.After(5 * time.Second): // two and a half lease lengths
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}), workqueue.WithConcurrency(2))
	stop := runPool(t, p)
	q.Add(context.Background(), []byte("slow"), workqueue.AddOptions{})
	await.True(t, "the ack", 20*time.Second, func() bool { return p.Counts().Acked == 1 })
	stop()
	if diff := cmp.Diff([]int{1}, attempts); diff != "" {
		t.Errorf("attempts (-want +got):\n%s", diff)
	}
	if s, _ := q.Stats(context.Background()); s.Depth() != 0 {
		t.Errorf("stats %+v after the ack, want an empty queue (an ack of an expired lease fails)", s)
	}
}

// TestPoolExtendsLeaseAfterShortItems runs a slow item on a worker that has handled short ones
// for about 160ms of its 600ms lease: the slow item starts while the extension timer set by the
// first short item is still pending (due at about 200ms, a third of the lease), so that timer finds
// it young and must set itself again for the slow item's own third. The slow item keeps its lease
// and is acked on its first attempt.
func TestPoolExtendsLeaseAfterShortItems(t *testing.T) {
	t.Parallel()
	q := mustMemory(t, workqueue.WithLeaseDuration(600*time.Millisecond))
	var mu sync.Mutex
	var first time.Time
	slowAttempts := []int{}
	p, _ := workqueue.NewPool(q, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
		mu.Lock()
		if first.IsZero() {
			first = time.Now()
		}
		busy := time.Since(first) < 160*time.Millisecond
		if string(it.Payload) == "slow" {
			slowAttempts = append(slowAttempts, it.Attempt)
		}
		mu.Unlock()
		if string(it.Payload) != "slow" {
			if busy {
				time.Sleep(time.Millisecond)
			}
			return nil
		}
		select {
		case <-time.After(2 * time.Second): // more than three lease lengths
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}), workqueue.WithConcurrency(2)) // the second worker would lease the slow item if it expired
	const short = 1000
	for i := range short {
		q.Add(context.Background(), []byte(strconv.Itoa(i)), workqueue.AddOptions{})
	}
	q.Add(context.Background(), []byte("slow"), workqueue.AddOptions{})
	stop := runPool(t, p)
	await.True(t, "the acks", 20*time.Second, func() bool { return p.Counts().Acked == short+1 })
	stop()
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]int{1}, slowAttempts); diff != "" {
		t.Errorf("attempts of the slow item (-want +got):\n%s", diff)
	}
	if c := p.Counts(); c.Retried != 0 || c.Lost != 0 {
		t.Errorf("counts %+v, want no retries and no lost leases", c)
	}
	if s, _ := q.Stats(context.Background()); s.Depth() != 0 {
		t.Errorf("stats %+v after the acks, want an empty queue (an ack of an expired lease fails)", s)
	}
}

// lostQueue is a Memory whose Extend reports every lease lost.
type lostQueue struct{ *workqueue.Memory }

func (lostQueue) Extend(context.Context, string) (time.Time, error) {
	return time.Time{}, workqueue.ErrLeaseLost
}

// TestPoolLeaseLostCancelsHandler: when Extend reports the lease lost, the running handler's ctx
// ends with ErrLeaseLost as its cause and the item counts as lost, neither acked nor retried.
func TestPoolLeaseLostCancelsHandler(t *testing.T) {
	q := mustMemory(t, workqueue.WithLeaseDuration(300*time.Millisecond))
	cause := make(chan error, 1)
	p, _ := workqueue.NewPool(lostQueue{q}, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
		select {
		case <-ctx.Done():
			cause <- context.Cause(ctx)
			return ctx.Err()
		case <-time.After(10 * time.Second):
			cause <- nil
			return nil
		}
	}))
	stop := runPool(t, p)
	q.Add(context.Background(), []byte("x"), workqueue.AddOptions{})
	if err := <-cause; !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("handler ctx cause %v, want ErrLeaseLost", err)
	}
	await.True(t, "the lost count", 20*time.Second, func() bool { return p.Counts().Lost == 1 })
	stop()
	if c := p.Counts(); c.Acked != 0 || c.Retried != 0 || c.Lost != 1 {
		t.Errorf("counts %+v, want only 1 lost", c)
	}
}

// ackLostQueue is a Memory whose first Ack is refused with ErrLeaseLost (and not passed on, so
// the item comes back when its lease ends).
type ackLostQueue struct {
	*workqueue.Memory
	refused atomic.Bool
}

func (q *ackLostQueue) Ack(ctx context.Context, lease string) error {
	if q.refused.CompareAndSwap(false, true) {
		return workqueue.ErrLeaseLost
	}
	return q.Memory.Ack(ctx, lease)
}

// TestPoolRefusedAckCountsLost: an Ack the queue refuses because the lease is gone is not an acked
// item: it counts as lost, and the acked count and metric move only when the item comes back and
// its Ack is taken.
func TestPoolRefusedAckCountsLost(t *testing.T) {
	q := &ackLostQueue{Memory: mustMemory(t, workqueue.WithLeaseDuration(200*time.Millisecond))}
	reg := prometheus.NewRegistry()
	p, err := workqueue.NewPool(q, workqueue.HandlerFunc(func(context.Context, *workqueue.Item) error { return nil }),
		workqueue.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	stop := runPool(t, p)
	q.Add(context.Background(), []byte("x"), workqueue.AddOptions{})
	await.True(t, "the second, taken ack, in the metrics", 20*time.Second, func() bool { return itemsTotal(t, reg, "acked") == 1 })
	for outcome, want := range map[string]float64{"acked": 1, "lost": 1} {
		if got := itemsTotal(t, reg, outcome); got != want {
			t.Errorf("items_total{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
	stop()
	if c := p.Counts(); c != (workqueue.Counts{Acked: 1, Lost: 1}) {
		t.Errorf("counts %+v, want 1 acked and 1 lost", c)
	}
}

// slowExtendQueue's Extend says it started on started and then hangs until its ctx ends.
type slowExtendQueue struct {
	*workqueue.Memory
	started chan struct{}
	once    sync.Once
}

func (q *slowExtendQueue) Extend(ctx context.Context, lease string) (time.Time, error) {
	q.once.Do(func() { close(q.started) })
	<-ctx.Done()
	return time.Time{}, ctx.Err()
}

// TestPoolDurationIsTheHandlers: the handle-duration metric is the time the handler ran, without
// the wait for an extension of its lease that was running when it returned.
func TestPoolDurationIsTheHandlers(t *testing.T) {
	t.Parallel()
	q := &slowExtendQueue{Memory: mustMemory(t, workqueue.WithLeaseDuration(3*time.Second)), started: make(chan struct{})}
	reg := prometheus.NewRegistry()
	var ran atomic.Int64 // the handler's time, ns
	p, err := workqueue.NewPool(q, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
		start := time.Now()
		<-q.started // an extension starts (about a third of the lease in) and hangs for its timeout
		time.Sleep(50 * time.Millisecond)
		ran.Store(int64(time.Since(start)))
		return nil
	}), workqueue.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	stop := runPool(t, p)
	q.Add(context.Background(), []byte("x"), workqueue.AddOptions{})
	await.True(t, "the ack in the metrics", 20*time.Second, func() bool { return itemsTotal(t, reg, "acked") == 1 })
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	stop()
	for _, mf := range mfs {
		if mf.GetName() == "podblocks_workqueue_handle_duration_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			handler := time.Duration(ran.Load())
			// The extension waits up to a third of the lease (1s) more; the metric must not.
			if got := time.Duration(h.GetSampleSum() * 1e9); h.GetSampleCount() != 1 || got < handler || got > handler+300*time.Millisecond {
				t.Fatalf("handle duration %v in %d samples, want one of the handler's %v", got, h.GetSampleCount(), handler)
			}
			return
		}
	}
	t.Fatal("no podblocks_workqueue_handle_duration_seconds")
}

func TestPoolItemTimeoutRetries(t *testing.T) {
	q := mustMemory(t)
	p, _ := workqueue.NewPool(q, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
		if it.Attempt == 1 {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}), workqueue.WithItemTimeout(50*time.Millisecond), workqueue.WithBackoff(func(int) time.Duration { return 0 }))
	stop := runPool(t, p)
	q.Add(context.Background(), []byte("x"), workqueue.AddOptions{})
	await.True(t, "the ack", 20*time.Second, func() bool { return p.Counts().Acked == 1 })
	stop()
	if c := p.Counts(); c.Retried != 1 {
		t.Errorf("counts %+v, want 1 retried", c)
	}
}

func TestPoolDrainReleasesUnfinished(t *testing.T) {
	q := mustMemory(t)
	started := make(chan struct{}, 2)
	p, _ := workqueue.NewPool(q, workqueue.HandlerFunc(func(ctx context.Context, it *workqueue.Item) error {
		started <- struct{}{}
		if string(it.Payload) == "quick" {
			time.Sleep(50 * time.Millisecond) // finishes within the drain budget
			return nil
		}
		<-ctx.Done() // never finishes by itself
		return ctx.Err()
	}), workqueue.WithConcurrency(2), workqueue.WithDrainTimeout(300*time.Millisecond))
	stop := runPool(t, p)
	q.Add(context.Background(), []byte("quick"), workqueue.AddOptions{})
	q.Add(context.Background(), []byte("stuck"), workqueue.AddOptions{})
	<-started
	<-started
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if c := p.Counts(); c.Acked != 1 || c.Released != 1 {
		t.Errorf("counts %+v, want 1 acked and 1 released", c)
	}
	s, _ := q.Stats(context.Background())
	if s.Ready != 1 || s.Leased != 0 {
		t.Errorf("stats %+v, want the stuck item ready again", s)
	}
}

func TestExecWorker(t *testing.T) {
	out := t.TempDir()
	script := `set -e
test "$(cat "$WORK_ITEM_FILE")" = "$WORK_ITEM_ID:payload" || { echo "bad payload" >&2; exit 3; }
case "$(cat "$WORK_ITEM_FILE")" in
  fail*) echo "it failed" >&2; exit 7 ;;
esac
echo "attempt $WORK_ITEM_ATTEMPT" > "$OUTPUT_DIR/result"
echo done`
	w, err := workqueue.NewExecWorker([]string{"sh", "-c", script}, workqueue.WithOutputRoot(out))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := w.Handle(ctx, &workqueue.Item{ID: "ok", Payload: []byte("ok:payload"), Attempt: 2}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(out, "ok", "result"))
	if err != nil || string(b) != "attempt 2\n" {
		t.Errorf("result %q (err %v), want %q", b, err, "attempt 2\n")
	}
	err = w.Handle(ctx, &workqueue.Item{ID: "fail", Payload: []byte("fail:payload"), Attempt: 1})
	var ee *workqueue.ExitError
	if !errors.As(err, &ee) || ee.Code != 7 || !strings.Contains(ee.Error(), "it failed") {
		t.Errorf("Handle of a failing item: %v, want exit code 7 with its stderr", err)
	}
	if _, err := workqueue.NewExecWorker(nil); !errors.Is(err, workqueue.ErrInvalid) {
		t.Errorf("NewExecWorker(nil): %v, want ErrInvalid", err)
	}
}

// TestExecWorkerUnderPoolKeepsLease runs a command longer than the lease: it is acked on the first attempt.
func TestExecWorkerUnderPoolKeepsLease(t *testing.T) {
	t.Parallel()
	q := mustMemory(t, workqueue.WithLeaseDuration(2*time.Second))
	w, _ := workqueue.NewExecWorker([]string{"sh", "-c", "sleep 5"})
	p, _ := workqueue.NewPool(q, w)
	stop := runPool(t, p)
	q.Add(context.Background(), []byte("x"), workqueue.AddOptions{})
	await.True(t, "the ack", 20*time.Second, func() bool { return p.Counts().Acked == 1 })
	stop()
	if c := p.Counts(); c.Retried != 0 || c.Lost != 0 {
		t.Errorf("counts %+v, want no retries and no lost leases", c)
	}
	if s, _ := q.Stats(context.Background()); s.Depth() != 0 {
		t.Errorf("stats %+v after the ack, want an empty queue (an ack of an expired lease fails)", s)
	}
}

// TestPoolLogsBuriedAtWarn: a buried item is logged at Warn, which `work` shows by default (it was
// Info, like a retry); a retry stays at Info.
func TestPoolLogsBuriedAtWarn(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"max attempts", errors.New("fails")},
		{"permanent", workqueue.Permanent(errors.New("bad input"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := mustMemory(t)
			core, logs := observer.New(zap.WarnLevel)
			p, err := workqueue.NewPool(q, workqueue.HandlerFunc(func(context.Context, *workqueue.Item) error { return tc.err }),
				workqueue.WithPoolMaxAttempts(2), workqueue.WithBackoff(func(int) time.Duration { return 0 }), workqueue.WithLogger(zap.New(core)))
			if err != nil {
				t.Fatal(err)
			}
			stop := runPool(t, p)
			id, _ := q.Add(context.Background(), []byte("x"), workqueue.AddOptions{})
			await.True(t, "a dead letter", 20*time.Second, func() bool { s, _ := q.Stats(context.Background()); return s.Dead == 1 })
			stop()
			var got []string
			for _, e := range logs.FilterMessage("item failed").All() {
				got = append(got, fmt.Sprintf("%v %v %v", e.Level, e.ContextMap()["id"], e.ContextMap()["outcome"]))
			}
			if diff := cmp.Diff([]string{"warn " + id + " buried"}, got); diff != "" {
				t.Errorf("item failed entries at Warn (-want +got):\n%s", diff)
			}
		})
	}
}
