package workqueue_test

import (
	"bytes"
	"testing"
	"testing/synctest"
	"time"

	"github.com/podblocks/podblocks/workqueue"
)

// TestKeeperExtendWithoutAnswer: a stage holds input items (500ms leases) while its output add takes
// 700ms, and one Extend never gets an answer (a request lost on a dead connection) until its ctx ends.
// The stage gives it up (it waits first the retry delay, 100ms, or twice the last answered Extend's
// time) and tries again with twice the wait, and meanwhile extends the other items it holds: no
// lease runs out, every item is acked once with its adds. An input whose Extends work but are slow
// (200ms of a 500ms lease) is waited for. One Extend without an answer used to hold up the second
// try of its own lease and the Extends of the other items of the batch until the add ended: every
// lease ran out.
func TestKeeperExtendWithoutAnswer(t *testing.T) {
	reduce := func(in *strictIn, out *strictOut) (component, error) {
		return stage(workqueue.NewReduce(in, out, 3, func(ps [][]byte) ([]byte, error) { return bytes.Join(ps, []byte(",")), nil },
			workqueue.WithStageRetry(100*time.Millisecond), workqueue.WithFlushAfter(100*time.Millisecond)))
	}
	copier := func(in *strictIn, out *strictOut) (component, error) {
		return stage(workqueue.NewCopier(in, []workqueue.Queue{out}, workqueue.WithStageRetry(100*time.Millisecond)))
	}
	for _, tc := range []struct {
		name   string
		build  func(in *strictIn, out *strictOut) (component, error)
		ids    []string
		lease  time.Duration
		hang   map[int]bool
		extLat time.Duration
	}{
		{"copier/first-hangs", copier, []string{"A"}, 500 * time.Millisecond, map[int]bool{1: true}, 0},
		{"reduce/first-hangs", reduce, []string{"A", "B", "C"}, 500 * time.Millisecond, map[int]bool{1: true}, 0},
		{"reduce/second-hangs", reduce, []string{"A", "B", "C"}, 500 * time.Millisecond, map[int]bool{2: true}, 0},
		{"copier/slow", copier, []string{"A"}, 500 * time.Millisecond, nil, 200 * time.Millisecond},
		{"reduce/slow", reduce, []string{"A", "B", "C"}, 500 * time.Millisecond, nil, 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				in := newStrictIn()
				in.hangExt, in.extLat = tc.hang, tc.extLat
				for _, id := range tc.ids {
					in.put(id, "p"+id, tc.lease)
				}
				out := newStrictOut(func(string, int) time.Duration { return 700 * time.Millisecond })
				in.ok = func(p string) bool {
					out.mu.Lock()
					defer out.mu.Unlock()
					for k, n := range out.made {
						if n > 0 && bytes.Contains([]byte(","+k+","), []byte(","+p+",")) {
							return true
						}
					}
					return false
				}
				st, err := tc.build(in, out)
				if err != nil {
					t.Fatal(err)
				}
				if err, _ := runFor(st, time.Minute); err != nil {
					t.Fatal(err)
				}
				in.mu.Lock()
				extends := in.extends
				in.mu.Unlock()
				out.mu.Lock()
				t.Logf("extends %d, add calls %v, made %v", extends, out.calls, out.made)
				if len(out.calls) != 1 {
					t.Errorf("add calls %v, want one batch", out.calls)
				}
				for p, n := range out.calls {
					if n != 1 {
						t.Errorf("%s added %d times, want once", p, n)
					}
				}
				out.mu.Unlock()
				in.report(t, tc.ids)
			})
		})
	}
}
