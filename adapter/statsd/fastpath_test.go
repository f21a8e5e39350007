package statsd

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
)

// TestFastPathMatchesFullParse feeds the same lines to a long-lived worker (whose repeated lines
// take the fast path) and to fresh workers (every line fully parsed) and compares the metrics.
func TestFastPathMatchesFullParse(t *testing.T) {
	cfg, err := ParseMappingConfig([]byte(testMapping))
	if err != nil {
		t.Fatal(err)
	}
	shapes := []string{
		"g:%d|g", "g:+%d|g", "g:-%d|g", "c:%d|c|@0.5", "c:%d|c|#a:b", "c:-%d|c", "s:m%d|s",
		"test.dispatcher.p.send.ok:%d|c", "typed.x:%d|g", "noisy.x:%d|c", "t:%d|ms|#k:v",
		"bad:%dx|c", "tagerr:%d|c|#novalue", "multi:%d|c:1|g", "agg:%d:2|ms", "infl,a=b:%d|c",
		"s:\xff%d|s", // a member that is not UTF-8, after valid ones of the same shape
	}
	r := rand.New(rand.NewPCG(1, 2))
	var lines []string
	for range 3000 {
		lines = append(lines, fmt.Sprintf(shapes[r.IntN(len(shapes))], r.IntN(5)))
	}
	fast, _ := New(WithMapping(cfg))
	slow, _ := New(WithMapping(cfg))
	w := newWorker(fast)
	w.begin(1)
	for _, l := range lines {
		w.handle([]byte(l))
		fw := newWorker(slow)
		fw.begin(1)
		fw.handle([]byte(l))
		fw.flush()
	}
	w.flush()
	if len(w.fast) == 0 {
		t.Fatal("the fast path was never taken")
	}
	a, _ := fast.Gather()
	b, _ := slow.Gather()
	if diff := cmp.Diff(b, a, protocmp.Transform(), cmp.FilterPath(func(p cmp.Path) bool {
		return p.Last().String() == `["created_timestamp"]`
	}, cmp.Ignore())); diff != "" {
		t.Errorf("fast path differs from the full parse (-full +fast):\n%s", diff)
	}
	if fast.total.lines.Load() != slow.total.lines.Load() || fast.total.samples.Load() != slow.total.samples.Load() ||
		fast.total.errors.Load() != slow.total.errors.Load() || fast.total.conflicts.Load() != slow.total.conflicts.Load() {
		t.Errorf("totals differ: fast lines %d samples %d errors %d conflicts %d; full %d %d %d %d",
			fast.total.lines.Load(), fast.total.samples.Load(), fast.total.errors.Load(), fast.total.conflicts.Load(),
			slow.total.lines.Load(), slow.total.samples.Load(), slow.total.errors.Load(), slow.total.conflicts.Load())
	}
}
