package workqueue_test

import (
	"bytes"
	"context"
	"errors"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/workqueue"
)

type component interface {
	Run(ctx context.Context) error
}

// runStages runs components until the test ends (and checks they return nil).
func runStages(t *testing.T, cs ...component) {
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, len(cs))
	for _, c := range cs {
		go func() { errs <- c.Run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for range cs {
			if err := <-errs; err != nil {
				t.Errorf("stage Run: %v", err)
			}
		}
	})
}

func addAll(t *testing.T, q workqueue.Queue, key func(string) string, payloads ...string) {
	t.Helper()
	for _, p := range payloads {
		if _, err := q.Add(context.Background(), []byte(p), workqueue.AddOptions{Key: key(p)}); err != nil {
			t.Fatal(err)
		}
	}
}

func noKey(string) string { return "" }

// take leases and acks n items from q and returns their payloads, sorted.
func take(t *testing.T, q workqueue.Queue, n int) []string {
	t.Helper()
	var got []string
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		it, err := q.Lease(ctx)
		cancel()
		if err != nil {
			t.Fatalf("after %d of %d items: %v", len(got), n, err)
		}
		got = append(got, string(it.Payload))
		q.Ack(context.Background(), it.Lease)
	}
	sort.Strings(got)
	return got
}

func idle(t *testing.T, qs ...workqueue.Queue) {
	t.Helper()
	for _, q := range qs {
		await.True(t, "the queue to drain", 20*time.Second, func() bool { s, _ := q.Stats(context.Background()); return s.Depth() == 0 })
	}
}

func TestCopierFilterSharderMerger(t *testing.T) {
	in, a, b, even, s0, s1, merged := mustMemory(t), mustMemory(t), mustMemory(t), mustMemory(t), mustMemory(t), mustMemory(t), mustMemory(t)
	cp, err := workqueue.NewCopier(in, []workqueue.Queue{a, b})
	if err != nil {
		t.Fatal(err)
	}
	fl, _ := workqueue.NewFilter(a, even, func(it *workqueue.Item) bool { n, _ := strconv.Atoi(string(it.Payload)); return n%2 == 0 })
	sh, _ := workqueue.NewSharder(b, []workqueue.Queue{s0, s1})
	mg, _ := workqueue.NewMerger([]workqueue.Queue{s0, s1}, merged)
	runStages(t, cp, fl, sh, mg)
	var all []string
	for i := range 10 {
		all = append(all, strconv.Itoa(i))
	}
	addAll(t, in, func(p string) string { return "k" + p }, all...)
	sort.Strings(all)
	if diff := cmp.Diff([]string{"0", "2", "4", "6", "8"}, take(t, even, 5)); diff != "" {
		t.Errorf("filtered (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(all, take(t, merged, 10)); diff != "" {
		t.Errorf("sharded then merged (-want +got):\n%s", diff)
	}
	idle(t, in, a, b, s0, s1)
}

func TestSharderKeepsKeysTogether(t *testing.T) {
	in, s0, s1 := mustMemory(t), mustMemory(t), mustMemory(t)
	sh, _ := workqueue.NewSharder(in, []workqueue.Queue{s0, s1})
	runStages(t, sh)
	addAll(t, in, func(p string) string { return p[:1] }, "a1", "b1", "c1", "d1")
	want := map[int][]string{}
	for _, p := range []string{"a1", "b1", "c1", "d1"} {
		i := workqueue.ShardOf(p[:1], 2)
		want[i] = append(want[i], p)
	}
	got := map[int][]string{}
	for i, q := range []workqueue.Queue{s0, s1} {
		if n := len(want[i]); n > 0 {
			got[i] = take(t, q, n)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("shards (-want +got):\n%s", diff)
	}
}

func TestSplitter(t *testing.T) {
	in, odd, even := mustMemory(t), mustMemory(t), mustMemory(t)
	sp, _ := workqueue.NewSplitter(in, []workqueue.Queue{even, odd},
		func(it *workqueue.Item) ([][]byte, error) {
			if bytes.Contains(it.Payload, []byte("x")) {
				return nil, errors.New("not a number list")
			}
			return bytes.Split(it.Payload, []byte(",")), nil
		},
		func(part []byte) int { n, _ := strconv.Atoi(string(part)); return n % 2 })
	runStages(t, sp)
	addAll(t, in, noKey, "1,2,3", "4", "x")
	if diff := cmp.Diff([]string{"2", "4"}, take(t, even, 2)); diff != "" {
		t.Errorf("even parts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"1", "3"}, take(t, odd, 2)); diff != "" {
		t.Errorf("odd parts (-want +got):\n%s", diff)
	}
	await.True(t, "the bad item to be buried", 20*time.Second, func() bool { s, _ := in.Stats(context.Background()); return s.Dead == 1 })
}

// A keyed input's parts are items of their own: with the input's key they would absorb each other in
// the output and all but the first would be lost once the input is acked.
func TestSplitterKeepsEveryPartOfAKeyedItem(t *testing.T) {
	in, out := mustMemory(t), mustMemory(t)
	sp, _ := workqueue.NewSplitter(in, []workqueue.Queue{out},
		func(it *workqueue.Item) ([][]byte, error) { return bytes.Split(it.Payload, []byte(",")), nil },
		func([]byte) int { return 0 })
	runStages(t, sp)
	addAll(t, in, func(string) string { return "order-7" }, "1,2,3")
	var got []string
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		it, err := out.Lease(ctx)
		cancel()
		if err != nil {
			t.Fatalf("after parts %q: %v", got, err)
		}
		got = append(got, string(it.Payload)+"/"+it.Key)
		if err := out.Ack(context.Background(), it.Lease); err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(got)
	if diff := cmp.Diff([]string{"1/", "2/", "3/"}, got); diff != "" {
		t.Errorf("parts as payload/key (-want +got):\n%s", diff)
	}
}

func TestJoin(t *testing.T) {
	left, right, out := mustMemory(t), mustMemory(t), mustMemory(t)
	j, _ := workqueue.NewJoin([]workqueue.Queue{left, right}, out, nil, func(parts [][]byte) ([]byte, error) {
		return bytes.Join(parts, []byte("+")), nil
	})
	runStages(t, j)
	key := func(p string) string { return p[:1] }
	addAll(t, left, key, "a-left", "b-left")
	addAll(t, right, key, "b-right")
	if diff := cmp.Diff([]string{"b-left+b-right"}, take(t, out, 1)); diff != "" {
		t.Errorf("joined (-want +got):\n%s", diff)
	}
	// "a" waits at the barrier until its right half comes.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := out.Lease(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("join emitted before both halves arrived: %v", err)
	}
	addAll(t, right, key, "a-right")
	if diff := cmp.Diff([]string{"a-left+a-right"}, take(t, out, 1)); diff != "" {
		t.Errorf("joined (-want +got):\n%s", diff)
	}
	idle(t, left, right)
}

func TestReduce(t *testing.T) {
	in, out := mustMemory(t), mustMemory(t)
	sum := func(ps [][]byte) ([]byte, error) {
		n := 0
		for _, p := range ps {
			v, err := strconv.Atoi(string(p))
			if err != nil {
				return nil, err
			}
			n += v
		}
		return []byte(strconv.Itoa(n)), nil
	}
	r, _ := workqueue.NewReduce(in, out, 3, sum, workqueue.WithFlushAfter(200*time.Millisecond))
	runStages(t, r)
	addAll(t, in, noKey, "1", "2", "3", "10")
	// A full batch of three, then the partial batch of one after the flush delay.
	got := take(t, out, 2)
	if diff := cmp.Diff([]string{"10", "6"}, got); diff != "" {
		t.Errorf("sums (-want +got):\n%s", diff)
	}
	idle(t, in)
}

func TestStageConstructorsValidate(t *testing.T) {
	q := mustMemory(t)
	for name, err := range map[string]error{
		"copier":   second(workqueue.NewCopier(q, nil)),
		"filter":   second(workqueue.NewFilter(q, q, nil)),
		"splitter": second(workqueue.NewSplitter(q, []workqueue.Queue{q}, nil, nil)),
		"sharder":  second(workqueue.NewSharder(nil, []workqueue.Queue{q})),
		"merger":   second(workqueue.NewMerger(nil, q)),
		"join":     second(workqueue.NewJoin([]workqueue.Queue{q}, q, nil, nil)),
		"reduce":   second(workqueue.NewReduce(q, q, 0, nil)),
	} {
		if !errors.Is(err, workqueue.ErrInvalid) {
			t.Errorf("%s with bad arguments: %v, want ErrInvalid", name, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// TestJoinShutdownDoesNotCountHeldAttempts: an item that waited at the barrier when the Join
// stopped was never processed, so giving it back must not use up one of its attempts (with max
// attempts, every restart of a Join would otherwise move waiting items toward the dead letters).
func TestJoinShutdownDoesNotCountHeldAttempts(t *testing.T) {
	left, right, out := mustMemory(t), mustMemory(t), mustMemory(t)
	j, err := workqueue.NewJoin([]workqueue.Queue{left, right}, out, nil, func(parts [][]byte) ([]byte, error) {
		return bytes.Join(parts, []byte("+")), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	addAll(t, left, func(p string) string { return p[:1] }, "a-left")
	await.True(t, "the Join to hold a-left", 20*time.Second, func() bool { s, _ := left.Stats(context.Background()); return s.Leased == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	lctx, lcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer lcancel()
	it, err := left.Lease(lctx)
	if err != nil {
		t.Fatal(err)
	}
	if it.Attempt != 1 {
		t.Fatalf("a-left given back by a stopping Join comes with attempt %d, want 1", it.Attempt)
	}
}

// TestJoinHoldsShortLeases: an item waits at the barrier for many times its lease and is neither
// redelivered nor retried: its lease is extended before it runs out, whatever its length.
func TestJoinHoldsShortLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		left, _ := workqueue.NewMemory(workqueue.WithLeaseDuration(300 * time.Millisecond))
		defer left.Close()
		right, _ := workqueue.NewMemory()
		defer right.Close()
		out, _ := workqueue.NewMemory()
		defer out.Close()
		j, err := workqueue.NewJoin([]workqueue.Queue{left, right}, out, nil, func(parts [][]byte) ([]byte, error) {
			return bytes.Join(parts, []byte("+")), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- j.Run(ctx) }()
		left.Add(ctx, []byte("l"), workqueue.AddOptions{Key: "k"})
		time.Sleep(5 * time.Second) // 16 leases
		right.Add(ctx, []byte("r"), workqueue.AddOptions{Key: "k"})
		it, err := out.Lease(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(it.Payload) != "l+r" {
			t.Errorf("joined %q, want l+r", it.Payload)
		}
		synctest.Wait()
		if s, _ := left.Stats(ctx); s.Depth() != 0 {
			t.Errorf("left after the join: %+v, want empty (the held item acked, not redelivered)", s)
		}
		if s, _ := out.Stats(ctx); s.Depth() != 1 {
			t.Errorf("output: %+v, want only the one joined item", s)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestJoinReturnsWhenInputsClose: like every other stage, a Join whose inputs close returns
// ErrClosed instead of waiting for its ctx (which would lose the error). One closed input is enough
// (no key can complete without it), and what the Join held from the others goes back to them.
func TestJoinReturnsWhenInputsClose(t *testing.T) {
	for name, closeBoth := range map[string]bool{"both": true, "one": false} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a, _ := workqueue.NewMemory()
				b, _ := workqueue.NewMemory()
				defer b.Close()
				out, _ := workqueue.NewMemory()
				defer out.Close()
				j, err := workqueue.NewJoin([]workqueue.Queue{a, b}, out, nil, func(p [][]byte) ([]byte, error) { return nil, nil })
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				done := make(chan error, 1)
				go func() { done <- j.Run(ctx) }()
				b.Add(ctx, []byte("held"), workqueue.AddOptions{Key: "k"})
				synctest.Wait()
				a.Close()
				if closeBoth {
					b.Close()
				}
				time.Sleep(time.Minute) // fake time: anything the Join would wait for has passed
				select {
				case err := <-done:
					if !errors.Is(err, workqueue.ErrClosed) {
						t.Errorf("Join over closed inputs returned %v, want ErrClosed", err)
					}
				default:
					cancel()
					t.Fatalf("Join still running after its inputs closed; after cancel it returned %v", <-done)
				}
				if closeBoth {
					return
				}
				if s, _ := b.Stats(ctx); s.Ready != 1 || s.Leased != 0 {
					t.Errorf("the item the Join held from the open input: %+v, want it ready again", s)
				}
			})
		})
	}
}

// outage is an output queue whose Add fails until a time (a backend during a failover), with err,
// or with an error of its own when err is nil.
type outage struct {
	*workqueue.Memory
	until  time.Time
	err    error
	failed atomic.Int64
}

func (q *outage) Add(ctx context.Context, payload []byte, opts workqueue.AddOptions) (string, error) {
	if time.Now().Before(q.until) {
		q.failed.Add(1)
		if q.err != nil {
			return "", q.err
		}
		return "", errors.New("output backend unavailable")
	}
	return q.Memory.Add(ctx, payload, opts)
}

func stage[T component](c T, err error) (component, error) { return c, err }

// stageCase builds a kind of stage from inputs to out. Fed the keyless items "0" to "4" on each
// input, it makes want items, and while its output is down it holds (leased) held input items.
type stageCase struct {
	name               string
	inputs, want, held int
	build              func(ins []workqueue.Queue, out workqueue.Queue, opts ...workqueue.StageOption) (component, error)
}

var stageCases = []stageCase{
	{"copier", 1, 5, 1, func(ins []workqueue.Queue, out workqueue.Queue, opts ...workqueue.StageOption) (component, error) {
		return stage(workqueue.NewCopier(ins[0], []workqueue.Queue{out}, opts...))
	}},
	{"filter", 1, 5, 1, func(ins []workqueue.Queue, out workqueue.Queue, opts ...workqueue.StageOption) (component, error) {
		return stage(workqueue.NewFilter(ins[0], out, func(*workqueue.Item) bool { return true }, opts...))
	}},
	{"splitter", 1, 5, 1, func(ins []workqueue.Queue, out workqueue.Queue, opts ...workqueue.StageOption) (component, error) {
		return stage(workqueue.NewSplitter(ins[0], []workqueue.Queue{out},
			func(it *workqueue.Item) ([][]byte, error) { return [][]byte{it.Payload}, nil }, func([]byte) int { return 0 }, opts...))
	}},
	{"sharder", 1, 5, 1, func(ins []workqueue.Queue, out workqueue.Queue, opts ...workqueue.StageOption) (component, error) {
		return stage(workqueue.NewSharder(ins[0], []workqueue.Queue{out}, opts...))
	}},
	{"merger", 2, 10, 2, func(ins []workqueue.Queue, out workqueue.Queue, opts ...workqueue.StageOption) (component, error) {
		return stage(workqueue.NewMerger(ins, out, opts...))
	}},
	// One loop waits on the output with the first pair; the other holds the rest of its input at the
	// barrier.
	{"join", 2, 5, 6, func(ins []workqueue.Queue, out workqueue.Queue, opts ...workqueue.StageOption) (component, error) {
		return stage(workqueue.NewJoin(ins, out, func(it *workqueue.Item) string { return string(it.Payload) },
			func(parts [][]byte) ([]byte, error) { return bytes.Join(parts, []byte("+")), nil }, opts...))
	}},
	{"reduce", 1, 3, 2, func(ins []workqueue.Queue, out workqueue.Queue, opts ...workqueue.StageOption) (component, error) {
		return stage(workqueue.NewReduce(ins[0], out, 2, func(ps [][]byte) ([]byte, error) { return bytes.Join(ps, nil), nil }, opts...))
	}},
}

// eachStage runs test for every stage case in a synctest bubble (fake time), with the case's
// inputs, made with inOpts and fed "0" to "4", and build, which makes the case's stage to out with
// opts after a retry delay and a flush delay of 100ms.
func eachStage(t *testing.T, inOpts []workqueue.Option, test func(t *testing.T, tc stageCase, ins []*workqueue.Memory, build func(out workqueue.Queue, opts ...workqueue.StageOption) component)) {
	for _, tc := range stageCases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var qs []workqueue.Queue
				var ins []*workqueue.Memory
				for range tc.inputs {
					in := mustMemory(t, inOpts...)
					for i := range 5 {
						if _, err := in.Add(context.Background(), []byte(strconv.Itoa(i)), workqueue.AddOptions{}); err != nil {
							t.Fatal(err)
						}
					}
					qs, ins = append(qs, in), append(ins, in)
				}
				build := func(out workqueue.Queue, opts ...workqueue.StageOption) component {
					opts = append([]workqueue.StageOption{workqueue.WithStageRetry(100 * time.Millisecond), workqueue.WithFlushAfter(100 * time.Millisecond)}, opts...)
					st, err := tc.build(qs, out, opts...)
					if err != nil {
						t.Fatal(err)
					}
					return st
				}
				test(t, tc, ins, build)
			})
		})
	}
}

// runFor runs c for d of (fake) time, then stops it and returns Run's error; if Run returned by
// itself before, it returns that error and true.
func runFor(c component, d time.Duration) (err error, returned bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	time.Sleep(d)
	select {
	case err := <-done:
		return err, true
	default:
		cancel()
		return <-done, false
	}
}

// TestStagesRideOutAnOutputOutage: a stage whose output fails for a while holds its input items,
// leased, until the output works again, instead of nacking them: a nack uses up an attempt, and a 5s
// failover would have sent every input item to the dead letters. Every item arrives once, no input
// lease runs out (they are 2s, shorter than the outage), and the outage is logged once.
func TestStagesRideOutAnOutputOutage(t *testing.T) {
	inOpts := []workqueue.Option{workqueue.WithMaxAttempts(3), workqueue.WithLeaseDuration(2 * time.Second)}
	eachStage(t, inOpts, func(t *testing.T, tc stageCase, ins []*workqueue.Memory, build func(workqueue.Queue, ...workqueue.StageOption) component) {
		ctx := context.Background()
		out := &outage{Memory: mustMemory(t), until: time.Now().Add(5 * time.Second)}
		core, logs := observer.New(zapcore.InfoLevel)
		st := build(out, workqueue.WithLogger(zap.New(core)))
		go func() {
			time.Sleep(4500 * time.Millisecond) // late in the outage
			leased := int64(0)
			for _, in := range ins {
				s, _ := in.Stats(ctx)
				leased += s.Leased
			}
			if leased != int64(tc.held) {
				t.Errorf("input items leased late in the outage: %d, want the %d the stage holds", leased, tc.held)
			}
		}()
		if err, _ := runFor(st, time.Minute); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if out.failed.Load() == 0 {
			t.Fatal("no output add failed: the test tests nothing")
		}
		checkRodeOut(t, tc, ins, out, logs)
	})
}

// checkRodeOut checks what a stage left after an outage of its output: every item in the output
// once, every input item acked (none dead), and the outage logged once, with its end.
func checkRodeOut(t *testing.T, tc stageCase, ins []*workqueue.Memory, out workqueue.Queue, logs *observer.ObservedLogs) {
	t.Helper()
	ctx := context.Background()
	if s, _ := out.Stats(ctx); s.Ready != int64(tc.want) {
		t.Errorf("output after the outage: %+v, want %d items ready (each once)", s, tc.want)
	}
	for i, in := range ins {
		if s, _ := in.Stats(ctx); s != (workqueue.Stats{}) {
			t.Errorf("input %d after the outage: %+v, want every item acked and none dead", i, s)
		}
	}
	if diff := cmp.Diff([]string{"warn output add failed; holding the input until it works", "info output add works again"}, logLines(logs)); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

// logLines is what was logged, as "level message" a line.
func logLines(logs *observer.ObservedLogs) []string {
	var msgs []string
	for _, e := range logs.All() {
		msgs = append(msgs, e.Level.String()+" "+e.Message)
	}
	return msgs
}

// checkGivenBack checks that every input item is ready again without an attempt counted.
func checkGivenBack(t *testing.T, ins []*workqueue.Memory) {
	t.Helper()
	for i, in := range ins {
		if s, _ := in.Stats(context.Background()); s != (workqueue.Stats{Ready: 5}) {
			t.Errorf("input %d: %+v, want its 5 items ready", i, s)
			continue
		}
		for range 5 {
			it, err := in.Lease(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if it.Attempt != 1 {
				t.Errorf("input %d: item %s comes back with attempt %d, want 1 (never worked on)", i, it.Payload, it.Attempt)
			}
		}
	}
}

// TestStagesGiveBackTheirInputWhenStoppedDuringAnOutage: a stage stopped while its output is down
// gives back what it holds, without using up an attempt (where the queue can).
func TestStagesGiveBackTheirInputWhenStoppedDuringAnOutage(t *testing.T) {
	eachStage(t, nil, func(t *testing.T, tc stageCase, ins []*workqueue.Memory, build func(workqueue.Queue, ...workqueue.StageOption) component) {
		out := &outage{Memory: mustMemory(t), until: time.Now().Add(time.Hour)}
		if err, returned := runFor(build(out), 10*time.Second); err != nil || returned {
			t.Fatalf("Run returned %v by itself: %v, want nil when stopped", returned, err)
		}
		checkGivenBack(t, ins)
	})
}

// TestStagesStopWhenTheirOutputCloses: a closed output ends the stage with ErrClosed (instead of a
// retry loop that can never succeed), and the input items go back to their queues.
func TestStagesStopWhenTheirOutputCloses(t *testing.T) {
	eachStage(t, nil, func(t *testing.T, tc stageCase, ins []*workqueue.Memory, build func(workqueue.Queue, ...workqueue.StageOption) component) {
		out := mustMemory(t)
		out.Close()
		if err, returned := runFor(build(out), time.Minute); !returned || !errors.Is(err, workqueue.ErrClosed) {
			t.Fatalf("Run over a closed output: returned by itself %v, with %v; want ErrClosed", returned, err)
		}
		checkGivenBack(t, ins)
	})
}

// TestStagesBuryWhatTheirOutputRefuses: an add the output refuses for good (too large) is not
// retried forever: the input items go to the dead letters with the reason.
func TestStagesBuryWhatTheirOutputRefuses(t *testing.T) {
	eachStage(t, nil, func(t *testing.T, tc stageCase, ins []*workqueue.Memory, build func(workqueue.Queue, ...workqueue.StageOption) component) {
		out := &outage{Memory: mustMemory(t), until: time.Now().Add(time.Hour), err: workqueue.ErrTooLarge}
		if err, _ := runFor(build(out), time.Minute); err != nil {
			t.Fatalf("Run: %v", err)
		}
		for i, in := range ins {
			dead, _ := in.Dead(context.Background(), 10)
			if len(dead) != 5 {
				t.Errorf("input %d: %d items dead, want 5", i, len(dead))
			}
			for _, d := range dead {
				if !strings.Contains(d.Reason, workqueue.ErrTooLarge.Error()) {
					t.Errorf("input %d: dead item %s with reason %q, want the output's refusal", i, d.Payload, d.Reason)
				}
			}
		}
	})
}

// pastDeadline hands out leases whose deadlines read as already past, as a Client's do from a
// server without ttl whose clock is behind.
type pastDeadline struct {
	*workqueue.Memory
	extends atomic.Int64
}

func (q *pastDeadline) Lease(ctx context.Context) (*workqueue.Item, error) {
	it, err := q.Memory.Lease(ctx)
	if it != nil {
		it.Deadline = time.Now().Add(-time.Minute)
	}
	return it, err
}

func (q *pastDeadline) Extend(ctx context.Context, lease string) (time.Time, error) {
	q.extends.Add(1)
	_, err := q.Memory.Extend(ctx, lease)
	return time.Now().Add(-time.Minute), err
}

// TestJoinHolderWithPastDeadlines: a held item whose deadline reads as past is extended once a
// second, not in a loop, and Run returns when its ctx ends (the loop used to spin and never look).
func TestJoinHolderWithPastDeadlines(t *testing.T) {
	left := &pastDeadline{Memory: mustMemory(t)}
	right, out := mustMemory(t), mustMemory(t)
	j, err := workqueue.NewJoin([]workqueue.Queue{left, right}, out, nil, func(p [][]byte) ([]byte, error) { return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := left.Add(bg(t), []byte("l"), workqueue.AddOptions{Key: "k"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	time.Sleep(1500 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run still running 5s after its ctx ended")
	}
	if n := left.extends.Load(); n > 5 {
		t.Errorf("%d Extends in 1.5s, want about one a second", n)
	}
}

// startJoin runs a Join of ins into out, joining parts with "+", until the returned stop or the
// end of the test, and checks that its Run returns nil.
func startJoin(t *testing.T, ins []workqueue.Queue, out workqueue.Queue, key func(*workqueue.Item) string, opts ...workqueue.StageOption) (stop func()) {
	t.Helper()
	j, err := workqueue.NewJoin(ins, out, key, func(parts [][]byte) ([]byte, error) { return bytes.Join(parts, []byte("+")), nil }, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Join Run: %v", err)
		}
	})
	t.Cleanup(stop)
	return stop
}

// counting counts the items leased from a Memory (and keeps its Release).
type counting struct {
	*workqueue.Memory
	leases atomic.Int64
}

func (q *counting) Lease(ctx context.Context) (*workqueue.Item, error) {
	it, err := q.Memory.Lease(ctx)
	if it != nil {
		q.leases.Add(1)
	}
	return it, err
}

// TestJoinHoldsSecondItemsOfAKey: items of one input whose join key already waits at the barrier
// wait behind it, held, and join in lease order with the next items of the key from the other
// input. They used to be nacked until the first one's partner came, an attempt each time, so a
// burst of them went to the dead letters (here, with 2 attempts, after 0.2s). Held, they are
// leased once each (no loop), their short leases are extended, and a stopping Join gives them back
// without counting an attempt.
func TestJoinHoldsSecondItemsOfAKey(t *testing.T) {
	for _, stop := range []bool{false, true} {
		t.Run(map[bool]string{false: "joined", true: "stopped"}[stop], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				leftMem := mustMemory(t, workqueue.WithMaxAttempts(2), workqueue.WithLeaseDuration(300*time.Millisecond))
				left := &counting{Memory: leftMem}
				right, out := mustMemory(t), mustMemory(t)
				stopJoin := startJoin(t, []workqueue.Queue{left, right}, out,
					func(it *workqueue.Item) string { return string(it.Payload[:1]) }, workqueue.WithStageRetry(100*time.Millisecond))
				addAll(t, left, noKey, "k1", "k2", "k3")
				time.Sleep(10 * time.Second) // 33 leases, 100 retry delays
				if n := left.leases.Load(); n != 3 {
					t.Errorf("left items leased %d times while they waited, want 3 (once each)", n)
				}
				if s, _ := leftMem.Stats(ctx); s != (workqueue.Stats{Leased: 3}) {
					t.Errorf("left while its items wait for their partners: %+v, want the 3 held", s)
				}
				if stop {
					stopJoin()
					for n := range 3 {
						lctx, lcancel := context.WithTimeout(ctx, time.Second)
						it, err := leftMem.Lease(lctx)
						lcancel()
						if err != nil {
							t.Fatalf("%d of the 3 left items given back by a stopping Join: %v", n, err)
						}
						if it.Attempt != 1 {
							t.Errorf("%s given back by a stopping Join with attempt %d, want 1", it.Payload, it.Attempt)
						}
						leftMem.Ack(ctx, it.Lease)
					}
					return
				}
				addAll(t, right, noKey, "ka", "kb", "kc")
				if diff := cmp.Diff([]string{"k1+ka", "k2+kb", "k3+kc"}, take(t, out, 3)); diff != "" {
					t.Errorf("joined (-want +got):\n%s", diff)
				}
				synctest.Wait()
				if s, _ := leftMem.Stats(ctx); s != (workqueue.Stats{}) {
					t.Errorf("left after the joins: %+v, want every item acked, none dead", s)
				}
			})
		})
	}
}

// hung is an output queue whose server stops answering until a time without closing: an Add begun
// before then gets no answer until its ctx ends, or, after a minute, the connection breaks.
type hung struct {
	*workqueue.Memory
	until time.Time
	hangs atomic.Int64
}

func (q *hung) Add(ctx context.Context, payload []byte, opts workqueue.AddOptions) (string, error) {
	if time.Now().Before(q.until) {
		q.hangs.Add(1)
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Minute):
			return "", errors.New("connection reset by peer")
		}
	}
	return q.Memory.Add(ctx, payload, opts)
}

// TestStagesRideOutAHungOutput: an output add that gets no answer is given up and tried again like
// one that failed, while the stage holds the input and keeps its leases alive.
// An add without a deadline waited for as long as the output hung, and the input leases (2s) ran
// out under it: each was an attempt counted, and with one attempt a dead letter.
func TestStagesRideOutAHungOutput(t *testing.T) {
	inOpts := []workqueue.Option{workqueue.WithMaxAttempts(1), workqueue.WithLeaseDuration(2 * time.Second)}
	eachStage(t, inOpts, func(t *testing.T, tc stageCase, ins []*workqueue.Memory, build func(workqueue.Queue, ...workqueue.StageOption) component) {
		out := &hung{Memory: mustMemory(t), until: time.Now().Add(10 * time.Second)}
		core, logs := observer.New(zapcore.InfoLevel)
		st := build(out, workqueue.WithLogger(zap.New(core)))
		if err, _ := runFor(st, 2*time.Minute); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if out.hangs.Load() == 0 {
			t.Fatal("no output add hung: the test tests nothing")
		}
		checkRodeOut(t, tc, ins, out, logs)
	})
}

// TestStagesStopDuringAHungOutput: a stage stopped while its output add hangs returns within half
// the input's lease (30s), and gives back what it holds without an attempt counted. It used to wait
// for the add as long as the output hung, the input's leases running out meanwhile.
func TestStagesStopDuringAHungOutput(t *testing.T) {
	eachStage(t, nil, func(t *testing.T, tc stageCase, ins []*workqueue.Memory, build func(workqueue.Queue, ...workqueue.StageOption) component) {
		out := &hung{Memory: mustMemory(t), until: time.Now().Add(time.Hour)}
		start := time.Now()
		if err, returned := runFor(build(out), 10*time.Second); err != nil || returned {
			t.Fatalf("Run returned %v by itself: %v, want nil when stopped", returned, err)
		}
		if d := time.Since(start) - 10*time.Second; d > 15*time.Second {
			t.Errorf("Run returned %v after its ctx ended, want at most half the input's 30s lease", d)
		}
		checkGivenBack(t, ins)
	})
}

// TestJoinRidesOutAHungOutputAfterAWait: an item a Join waited with at the barrier, for many times
// its lease, goes to a hung output with the deadline its last extension gave, by which its lease is
// kept alive while the add hangs. With the deadline of its first lease, long past, the add waited
// half the partner's (30s) lease, 50 times the waiting item's.
func TestJoinRidesOutAHungOutputAfterAWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		left := mustMemory(t, workqueue.WithMaxAttempts(1), workqueue.WithLeaseDuration(300*time.Millisecond))
		right := mustMemory(t, workqueue.WithMaxAttempts(1))
		out := &hung{Memory: mustMemory(t), until: time.Now().Add(10 * time.Second)}
		startJoin(t, []workqueue.Queue{left, right}, out, nil)
		addAll(t, left, func(string) string { return "k" }, "l")
		time.Sleep(5 * time.Second)
		addAll(t, right, func(string) string { return "k" }, "r")
		if diff := cmp.Diff([]string{"l+r"}, take(t, out, 1)); diff != "" {
			t.Errorf("joined (-want +got):\n%s", diff)
		}
		if out.hangs.Load() == 0 {
			t.Fatal("no output add hung: the test tests nothing")
		}
		synctest.Wait()
		for name, q := range map[string]*workqueue.Memory{"left": left, "right": right} {
			if s, _ := q.Stats(ctx); s != (workqueue.Stats{}) {
				t.Errorf("%s after the join: %+v, want its item acked, not dead", name, s)
			}
		}
	})
}

// flaky is an input queue whose Lease fails once, on call fail.
type flaky struct {
	*workqueue.Memory
	fail, calls atomic.Int64
}

func (q *flaky) Lease(ctx context.Context) (*workqueue.Item, error) {
	if q.calls.Add(1) == q.fail.Load() {
		return nil, errors.New("input unavailable")
	}
	return q.Memory.Lease(ctx)
}

// TestReduceRidesOutALeaseErrorInABatch: a Lease that fails while a batch fills is logged and tried
// again, as any stage's, until the batch is full or its flush delay is up; the batch gets the
// items that arrive in that time. Reduce used to emit the partial batch at once, and not log why.
func TestReduceRidesOutALeaseErrorInABatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := &flaky{Memory: mustMemory(t)}
		in.fail.Store(2)
		out := mustMemory(t)
		core, logs := observer.New(zapcore.InfoLevel)
		r, err := workqueue.NewReduce(in, out, 2, func(ps [][]byte) ([]byte, error) { return bytes.Join(ps, []byte("+")), nil },
			workqueue.WithFlushAfter(time.Second), workqueue.WithStageRetry(100*time.Millisecond), workqueue.WithLogger(zap.New(core)))
		if err != nil {
			t.Fatal(err)
		}
		addAll(t, in, noKey, "1", "2")
		if err, _ := runFor(r, 10*time.Second); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if s, _ := out.Stats(context.Background()); s.Ready != 1 {
			t.Errorf("output: %+v, want the one batch of both items", s)
		}
		if diff := cmp.Diff([]string{"1+2"}, take(t, out, 1)); diff != "" {
			t.Errorf("batch (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"warn lease failed"}, logLines(logs)); diff != "" {
			t.Errorf("log (-want +got):\n%s", diff)
		}
	})
}

// slowOut is an output that works but answers every Add after lat. With madeFirst it makes the
// item before it waits (a server whose answer is slow: an add given up may have been made), else
// after (a slow server that gives up with its client).
type slowOut struct {
	*workqueue.Memory
	lat       time.Duration
	madeFirst bool
	calls     atomic.Int64
}

func (q *slowOut) Add(ctx context.Context, payload []byte, opts workqueue.AddOptions) (string, error) {
	q.calls.Add(1)
	var id string
	var err error
	if q.madeFirst {
		id, err = q.Memory.Add(context.Background(), payload, opts)
	}
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(q.lat):
	}
	if q.madeFirst {
		return id, err
	}
	return q.Memory.Add(ctx, payload, opts)
}

// TestStagesWaitForASlowOutput: an output that works but answers each add in 0.6 of the input's
// lease gets every add through once, and the input is acked. The add used to be given up after half
// the lease left, and after each extension tried again with half a lease, forever: the input was
// never acked, and an output that made the item before its slow answer got it again each time.
func TestStagesWaitForASlowOutput(t *testing.T) {
	for _, madeFirst := range []bool{false, true} {
		t.Run(map[bool]string{false: "slow-server", true: "slow-answer"}[madeFirst], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				in := mustMemory(t, workqueue.WithMaxAttempts(1), workqueue.WithLeaseDuration(time.Second))
				out := &slowOut{Memory: mustMemory(t), lat: 600 * time.Millisecond, madeFirst: madeFirst}
				core, logs := observer.New(zapcore.InfoLevel)
				c, err := workqueue.NewCopier(in, []workqueue.Queue{out}, workqueue.WithStageRetry(100*time.Millisecond), workqueue.WithLogger(zap.New(core)))
				if err != nil {
					t.Fatal(err)
				}
				addAll(t, in, noKey, "x")
				if err, _ := runFor(c, 30*time.Second); err != nil {
					t.Fatal(err)
				}
				checkAddedOnce(t, in, out, 1, logs)
			})
		})
	}
}

// TestStagesGetAddsThroughAnOutputSlowerThanTheirWait: an output that answers in 2s, slower than the
// 0.8s a stage waits at first for an answer (8 retry delays), still gets the adds: each one given up
// is tried again with twice the wait, and the next items get twice the last answer's time. The
// input (1s leases) is held meanwhile, the wait logged once as an outage.
func TestStagesGetAddsThroughAnOutputSlowerThanTheirWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		in := mustMemory(t, workqueue.WithMaxAttempts(1), workqueue.WithLeaseDuration(time.Second))
		out := &slowOut{Memory: mustMemory(t), lat: 2 * time.Second}
		core, logs := observer.New(zapcore.InfoLevel)
		c, err := workqueue.NewCopier(in, []workqueue.Queue{out}, workqueue.WithStageRetry(100*time.Millisecond), workqueue.WithLogger(zap.New(core)))
		if err != nil {
			t.Fatal(err)
		}
		addAll(t, in, noKey, "1", "2", "3")
		if err, _ := runFor(c, time.Minute); err != nil {
			t.Fatal(err)
		}
		// The first item's add waits 0.8s, 1.6s, then 3.2s: answered; the others' 4s at once.
		if n := out.calls.Load(); n != 5 {
			t.Errorf("%d output adds, want 5", n)
		}
		if s, _ := out.Stats(ctx); s != (workqueue.Stats{Ready: 3}) {
			t.Errorf("output: %+v, want the 3 items once each", s)
		}
		if s, _ := in.Stats(ctx); s != (workqueue.Stats{}) {
			t.Errorf("input: %+v, want every item acked", s)
		}
		if diff := cmp.Diff([]string{"warn output add failed; holding the input until it works", "info output add works again"}, logLines(logs)); diff != "" {
			t.Errorf("log (-want +got):\n%s", diff)
		}
	})
}

// TestSplitterKeepsItsInputLeasedThroughItsParts: the adds of one item's parts take longer, all
// together, than the input's lease; the lease is extended meanwhile, so each part is added once and
// nothing is logged. The later parts of an item used to get ever shorter waits and time out on a
// healthy output (an outage logged, and parts added twice).
func TestSplitterKeepsItsInputLeasedThroughItsParts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := mustMemory(t, workqueue.WithMaxAttempts(3), workqueue.WithLeaseDuration(time.Second))
		out := &slowOut{Memory: mustMemory(t), lat: 120 * time.Millisecond, madeFirst: true}
		core, logs := observer.New(zapcore.InfoLevel)
		s, err := workqueue.NewSplitter(in, []workqueue.Queue{out}, func(it *workqueue.Item) ([][]byte, error) {
			var ps [][]byte
			for i := range 10 {
				ps = append(ps, append(append([]byte(nil), it.Payload...), byte('0'+i)))
			}
			return ps, nil
		}, func([]byte) int { return 0 }, workqueue.WithStageRetry(100*time.Millisecond), workqueue.WithLogger(zap.New(core)))
		if err != nil {
			t.Fatal(err)
		}
		addAll(t, in, noKey, "a", "b", "c", "d", "e")
		if err, _ := runFor(s, time.Minute); err != nil {
			t.Fatal(err)
		}
		checkAddedOnce(t, in, out, 50, logs)
	})
}

// checkAddedOnce checks that a stage from in to out made each of its want adds once, with one call
// each, acked every input item, and logged nothing.
func checkAddedOnce(t *testing.T, in workqueue.Queue, out *slowOut, want int64, logs *observer.ObservedLogs) {
	t.Helper()
	ctx := context.Background()
	if n := out.calls.Load(); n != want {
		t.Errorf("%d output adds, want %d", n, want)
	}
	if s, _ := out.Stats(ctx); s != (workqueue.Stats{Ready: want}) {
		t.Errorf("output: %+v, want its %d items once each", s, want)
	}
	if s, _ := in.Stats(ctx); s != (workqueue.Stats{}) {
		t.Errorf("input: %+v, want every item acked", s)
	}
	if diff := cmp.Diff([]string(nil), logLines(logs)); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

// wireDeadlines is an input whose leases' deadlines are not this process's: zero (shift 0), or as a
// Client gets them from a server that writes no ttl, by the server's clock (shift from this one's),
// with no monotonic reading.
type wireDeadlines struct {
	*workqueue.Memory
	shift time.Duration
}

func (q *wireDeadlines) fix(d time.Time) time.Time {
	if q.shift == 0 {
		return time.Time{}
	}
	return d.Add(q.shift).Round(0)
}

func (q *wireDeadlines) Lease(ctx context.Context) (*workqueue.Item, error) {
	it, err := q.Memory.Lease(ctx)
	if it != nil {
		it.Deadline = q.fix(it.Deadline)
	}
	return it, err
}

func (q *wireDeadlines) Extend(ctx context.Context, lease string) (time.Time, error) {
	d, err := q.Memory.Extend(ctx, lease)
	if err != nil {
		return d, err
	}
	return q.fix(d), nil
}

// TestStagesHoldInputsOfUnknownDeadlineThroughAHungOutput: with deadlines that tell nothing (zero,
// or by a server's clock an hour behind or ahead), a stage holds its input (5s leases) through a 20s
// hang of its output, extending it at the retry delay. The add used to wait 8 retry delays, or half
// of an hour-long lease that was not one, and the lease ran out under it: with one attempt, a dead
// letter.
func TestStagesHoldInputsOfUnknownDeadlineThroughAHungOutput(t *testing.T) {
	for _, tc := range []struct {
		name  string
		shift time.Duration
	}{{"zero", 0}, {"server-behind-1h", -time.Hour}, {"server-ahead-1h", time.Hour}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				mem := mustMemory(t, workqueue.WithMaxAttempts(1), workqueue.WithLeaseDuration(5*time.Second))
				in := &wireDeadlines{Memory: mem, shift: tc.shift}
				out := &hung{Memory: mustMemory(t), until: time.Now().Add(20 * time.Second)}
				c, err := workqueue.NewCopier(in, []workqueue.Queue{out})
				if err != nil {
					t.Fatal(err)
				}
				addAll(t, mem, noKey, "x")
				if err, _ := runFor(c, 90*time.Second); err != nil {
					t.Fatal(err)
				}
				if out.hangs.Load() == 0 {
					t.Fatal("no output add hung: the test tests nothing")
				}
				if s, _ := out.Stats(ctx); s != (workqueue.Stats{Ready: 1}) {
					t.Errorf("output: %+v, want the item once", s)
				}
				if s, _ := mem.Stats(ctx); s != (workqueue.Stats{}) {
					t.Errorf("input: %+v, want the item acked, none dead", s)
				}
			})
		})
	}
}

// stolen is an input whose leases are taken away once leased: Extend says ErrLeaseLost. It counts
// Acks.
type stolen struct {
	*workqueue.Memory
	acks atomic.Int64
}

func (q *stolen) Extend(ctx context.Context, lease string) (time.Time, error) {
	return time.Time{}, workqueue.ErrLeaseLost
}

func (q *stolen) Ack(ctx context.Context, lease string) error {
	q.acks.Add(1)
	return q.Memory.Ack(ctx, lease)
}

// TestStagesLetGoOfAnInputWhoseLeaseIsLost: a lease found lost while the output add hangs ends the
// work on the item at once (at its first extension, a third of the lease in): the add is given up
// and the item never acked without its output; it comes again, and with it the add.
func TestStagesLetGoOfAnInputWhoseLeaseIsLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := &stolen{Memory: mustMemory(t, workqueue.WithLeaseDuration(3*time.Second))}
		out := &hung{Memory: mustMemory(t), until: time.Now().Add(time.Hour)}
		core, logs := observer.New(zapcore.InfoLevel)
		c, err := workqueue.NewCopier(in, []workqueue.Queue{out}, workqueue.WithLogger(zap.New(core)))
		if err != nil {
			t.Fatal(err)
		}
		addAll(t, in, noKey, "x")
		if err, _ := runFor(c, 1500*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if n := out.hangs.Load(); n != 2 {
			t.Errorf("%d output adds in 1.5s, want 2: the first given up at the loss (1s), then the item's next delivery's", n)
		}
		if n := in.acks.Load(); n != 0 {
			t.Errorf("%d acks of an item whose output add was never made", n)
		}
		lines := logLines(logs)
		if len(lines) == 0 {
			t.Error("the lost lease was not logged")
		}
		for _, l := range lines {
			if l != "warn input lease lost; giving the input back" {
				t.Errorf("logged %q, want only the lost leases (one a delivery)", l)
			}
		}
	})
}

// hungIn is an input whose server stops answering from a time for an hour: Extend, Ack, Release
// and Nack get no answer until their ctx ends or the hour is over.
type hungIn struct {
	*workqueue.Memory
	from time.Time
}

func (q *hungIn) hang(ctx context.Context) error {
	if now := time.Now(); now.Before(q.from) || !now.Before(q.from.Add(time.Hour)) {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(q.from.Add(time.Hour))):
		return nil
	}
}

func (q *hungIn) Extend(ctx context.Context, lease string) (time.Time, error) {
	if err := q.hang(ctx); err != nil {
		return time.Time{}, err
	}
	return q.Memory.Extend(ctx, lease)
}

func (q *hungIn) Ack(ctx context.Context, lease string) error {
	if err := q.hang(ctx); err != nil {
		return err
	}
	return q.Memory.Ack(ctx, lease)
}

func (q *hungIn) Release(ctx context.Context, lease string) error {
	if err := q.hang(ctx); err != nil {
		return err
	}
	return q.Memory.Release(ctx, lease)
}

func (q *hungIn) Nack(ctx context.Context, lease string, delay time.Duration) error {
	if err := q.hang(ctx); err != nil {
		return err
	}
	return q.Memory.Nack(ctx, lease, delay)
}

// TestStagesStopWhileInputAndOutputHang: a stage stopped while its output add and its input (one
// server) both hang returns at most 2*StopGrace after its ctx ended: the add in flight gets
// StopGrace, then the calls giving the input back the rest. It used to wait for the input's
// answer without a limit (59m55s, when it came after an hour).
func TestStagesStopWhileInputAndOutputHang(t *testing.T) {
	for _, tc := range []struct {
		name  string
		feed  map[int][]string // input -> payloads
		build func(ins []workqueue.Queue, out workqueue.Queue, opts ...workqueue.StageOption) (component, error)
	}{
		{"copier", map[int][]string{0: {"x"}}, func(ins []workqueue.Queue, out workqueue.Queue, opts ...workqueue.StageOption) (component, error) {
			return stage(workqueue.NewCopier(ins[0], []workqueue.Queue{out}, opts...))
		}},
		// "a" goes to the output; "b" waits at the barrier, held.
		{"join", map[int][]string{0: {"a", "b"}, 1: {"a"}}, func(ins []workqueue.Queue, out workqueue.Queue, opts ...workqueue.StageOption) (component, error) {
			return stage(workqueue.NewJoin(ins, out, func(it *workqueue.Item) string { return string(it.Payload) },
				func(parts [][]byte) ([]byte, error) { return bytes.Join(parts, []byte("+")), nil }, opts...))
		}},
		{"reduce", map[int][]string{0: {"1", "2"}}, func(ins []workqueue.Queue, out workqueue.Queue, opts ...workqueue.StageOption) (component, error) {
			return stage(workqueue.NewReduce(ins[0], out, 2, func(ps [][]byte) ([]byte, error) { return bytes.Join(ps, nil), nil }, opts...))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				var ins []workqueue.Queue
				for i := range len(tc.feed) {
					mem := mustMemory(t, workqueue.WithLeaseDuration(2*time.Second))
					addAll(t, mem, noKey, tc.feed[i]...)
					ins = append(ins, &hungIn{Memory: mem, from: start.Add(100 * time.Millisecond)})
				}
				out := &hung{Memory: mustMemory(t), until: start.Add(time.Hour)}
				st, err := tc.build(ins, out, workqueue.WithStageRetry(100*time.Millisecond), workqueue.WithFlushAfter(50*time.Millisecond))
				if err != nil {
					t.Fatal(err)
				}
				if err, returned := runFor(st, 5*time.Second); err != nil || returned {
					t.Fatalf("Run returned %v by itself: %v, want nil when stopped", returned, err)
				}
				if out.hangs.Load() == 0 {
					t.Fatal("no output add hung: the test tests nothing")
				}
				if d := time.Since(start) - 5*time.Second; d > 2*workqueue.StopGrace {
					t.Errorf("Run returned %v after its ctx ended, want at most %v", d, 2*workqueue.StopGrace)
				}
			})
		})
	}
}
