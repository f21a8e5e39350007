package workqueue_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/internal/promscrape"
	"github.com/podblocks/podblocks/workqueue"
)

// stageScrape scrapes the pipeline stage metrics of reg: their samples, but for the add
// histogram's buckets and sum (fake time makes every add take 0s), and its count.
func stageScrape(t *testing.T, reg prometheus.Gatherer) []string {
	t.Helper()
	var out []string
	for _, l := range promscrape.Lines(t, reg, "podblocks_workqueue_stage_") {
		if !strings.Contains(l, "_bucket{") && !strings.Contains(l, "_sum{") {
			out = append(out, l)
		}
	}
	return out
}

// stageSamples are the samples stageScrape finds for the stage called name, which passed, dropped,
// buried, released and lost the items of items (in that order), holds held, made adds adds (the
// count of their times), and whose lease, extend and add calls failed errs times.
func stageSamples(name string, items [5]int, held, adds int, errs [3]int64) []string {
	var s []string
	s = append(s, fmt.Sprintf(`podblocks_workqueue_stage_add_duration_seconds_count{stage=%q} %d`, name, adds))
	for i, call := range []string{"add", "extend", "lease"} {
		s = append(s, fmt.Sprintf(`podblocks_workqueue_stage_errors_total{call=%q,stage=%q} %d`, call, name, errs[2-i]))
	}
	s = append(s, fmt.Sprintf(`podblocks_workqueue_stage_held_items{stage=%q} %d`, name, held))
	sorted := []int{2, 1, 4, 0, 3} // buried, dropped, lost, passed, released
	for _, i := range sorted {
		outcome := [...]string{"passed", "dropped", "buried", "released", "lost"}[i]
		s = append(s, fmt.Sprintf(`podblocks_workqueue_stage_items_total{outcome=%q,stage=%q} %d`, outcome, name, items[i]))
	}
	return s
}

// troubledInput is an input whose Lease fails once, at first, and whose Ack fails for the item
// whose payload is bad (a server that did not answer in time).
type troubledInput struct {
	*workqueue.Memory
	bad    string
	leases atomic.Int64
}

func (q *troubledInput) Lease(ctx context.Context) (*workqueue.Item, error) {
	if q.leases.Add(1) == 1 {
		return nil, errors.New("input unavailable")
	}
	it, err := q.Memory.Lease(ctx)
	if err == nil && string(it.Payload) == q.bad {
		it.Lease = "bad:" + it.Lease
	}
	return it, err
}

func (q *troubledInput) Ack(ctx context.Context, lease string) error {
	if strings.HasPrefix(lease, "bad:") {
		return errors.New("ack not answered")
	}
	return q.Memory.Ack(ctx, lease)
}

// TestStageMetricsCountWhatTheStageDid: after items flow, a stage's metrics say what became of
// each input item (passed on, dropped, buried, lost), what it added, how many of its calls failed
// (here: one lease, and the adds an output outage refused, each counted as the output saw it), and
// that it holds nothing once its input is done with.
func TestStageMetricsCountWhatTheStageDid(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := &troubledInput{Memory: mustMemory(t), bad: "keep-unacked"}
		out := &outage{Memory: mustMemory(t), until: time.Now().Add(time.Second)}
		reg := prometheus.NewRegistry()
		// "drop" has no part routed, "bury" fails to split, the others pass on.
		s, err := workqueue.NewSplitter(in, []workqueue.Queue{out}, func(it *workqueue.Item) ([][]byte, error) {
			if string(it.Payload) == "bury" {
				return nil, errors.New("cannot split")
			}
			return [][]byte{it.Payload}, nil
		}, func(p []byte) int {
			if bytes.Equal(p, []byte("drop")) {
				return -1
			}
			return 0
		}, workqueue.WithRegisterer(reg), workqueue.WithStageRetry(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		addAll(t, in, noKey, "keep-1", "drop", "bury", "keep-2", "keep-unacked")
		if diff := cmp.Diff(stageSamples("splitter", [5]int{}, 0, 0, [3]int64{}), stageScrape(t, reg)); diff != "" {
			t.Errorf("before Run (-want +got):\n%s", diff)
		}
		if err, _ := runFor(s, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if out.failed.Load() == 0 {
			t.Fatal("no output add failed: the test tests nothing")
		}
		want := stageSamples("splitter", [5]int{2, 1, 1, 0, 1}, 0, 3, [3]int64{1, 0, out.failed.Load()})
		if diff := cmp.Diff(want, stageScrape(t, reg)); diff != "" {
			t.Errorf("after the items flowed (-want +got):\n%s", diff)
		}
		if st, _ := out.Stats(context.Background()); st.Ready != 3 {
			t.Errorf("output: %+v, want the 3 items the metrics count added", st)
		}
	})
}

// TestStageMetricsShowWhatAStageHolds: while its output is down, every kind of stage shows the
// input items it holds in podblocks_workqueue_stage_held_items (a Join's waiting parts, a Reduce's
// batch), and counts them released once stopped, labelled with its kind.
func TestStageMetricsShowWhatAStageHolds(t *testing.T) {
	eachStage(t, nil, func(t *testing.T, tc stageCase, ins []*workqueue.Memory, build func(workqueue.Queue, ...workqueue.StageOption) component) {
		out := &outage{Memory: mustMemory(t), until: time.Now().Add(time.Hour)}
		reg := prometheus.NewRegistry()
		st := build(out, workqueue.WithRegisterer(reg))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- st.Run(ctx) }()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		errs := [3]int64{0, 0, out.failed.Load()}
		if diff := cmp.Diff(stageSamples(tc.name, [5]int{}, tc.held, 0, errs), stageScrape(t, reg)); diff != "" {
			t.Errorf("during the outage (-want +got):\n%s", diff)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		errs[2] = out.failed.Load()
		if diff := cmp.Diff(stageSamples(tc.name, [5]int{3: tc.held}, 0, 0, errs), stageScrape(t, reg)); diff != "" {
			t.Errorf("stopped (-want +got):\n%s", diff)
		}
	})
}

// TestStageMetricsCountAJoinPartWhoseLeaseIsLost: a part waiting at a Join's barrier whose lease
// is found lost leaves the barrier and is counted lost: the Join holds it no more.
func TestStageMetricsCountAJoinPartWhoseLeaseIsLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &stolen{Memory: mustMemory(t, workqueue.WithLeaseDuration(3*time.Second))}
		b := mustMemory(t)
		out := mustMemory(t)
		reg := prometheus.NewRegistry()
		j, err := workqueue.NewJoin([]workqueue.Queue{a, b}, out, nil, func(parts [][]byte) ([]byte, error) { return bytes.Join(parts, nil), nil },
			workqueue.WithRegisterer(reg), workqueue.WithStageName("pairs"))
		if err != nil {
			t.Fatal(err)
		}
		addAll(t, a, func(string) string { return "k" }, "x")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- j.Run(ctx) }()
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		if diff := cmp.Diff(stageSamples("pairs", [5]int{}, 1, 0, [3]int64{}), stageScrape(t, reg)); diff != "" {
			t.Errorf("waiting at the barrier (-want +got):\n%s", diff)
		}
		time.Sleep(time.Second) // the first Extend, a third of the lease in, finds it lost
		synctest.Wait()
		if diff := cmp.Diff(stageSamples("pairs", [5]int{4: 1}, 0, 0, [3]int64{0, 1, 0}), stageScrape(t, reg)); diff != "" {
			t.Errorf("its lease lost (-want +got):\n%s", diff)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestStagesOnOneRegistererNeedNames: two stages of one kind on one registerer collide unless
// named, and the second constructor says so; a collision registers none of its metrics.
func TestStagesOnOneRegistererNeedNames(t *testing.T) {
	q := mustMemory(t)
	reg := prometheus.NewRegistry()
	if _, err := workqueue.NewCopier(q, []workqueue.Queue{q}, workqueue.WithRegisterer(reg)); err != nil {
		t.Fatal(err)
	}
	_, err := workqueue.NewCopier(q, []workqueue.Queue{q}, workqueue.WithRegisterer(reg))
	if err == nil || !strings.Contains(err.Error(), `"copier"`) || !strings.Contains(err.Error(), "WithStageName") {
		t.Errorf("a second unnamed copier on the registerer: %v, want an error naming the stage and WithStageName", err)
	}
	for _, name := range []string{"a", "b"} {
		if _, err := workqueue.NewCopier(q, []workqueue.Queue{q}, workqueue.WithRegisterer(reg), workqueue.WithStageName(name)); err != nil {
			t.Errorf("copier %q: %v", name, err)
		}
	}
	if _, err := workqueue.NewFilter(q, q, func(*workqueue.Item) bool { return true }, workqueue.WithRegisterer(reg)); err != nil {
		t.Errorf("a filter beside the copiers: %v", err)
	}

	// A collector of the user's takes one of the names: the stage registers nothing.
	reg = prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "podblocks_workqueue_stage_held_items", Help: "Not a stage's.",
		ConstLabels: prometheus.Labels{"stage": "copier"}}))
	if _, err := workqueue.NewCopier(q, []workqueue.Queue{q}, workqueue.WithRegisterer(reg)); err == nil {
		t.Fatal("a copier registered beside a collector that has one of its metrics")
	}
	if got := promscrape.Lines(t, reg, "podblocks_workqueue_stage_items_total"); len(got) != 0 {
		t.Errorf("the copier that failed to register left %q registered", got)
	}
}
