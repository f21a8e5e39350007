package workqueue_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/workqueue"
)

func joinComma(ps [][]byte) ([]byte, error) { return bytes.Join(ps, []byte(",")), nil }

// TestReduceKeepsLeasesWhileItFills: a Reduce's batch may take its flush delay (here 1.5s) to fill,
// far longer than its input's leases (300ms). The items leased first must stay leased meanwhile: one
// item in, one result of it out, the item acked. Reduce used to extend no lease before its adds, so
// the item's lease ran out while the batch filled and Memory handed the item out again, to the same
// batch, whose result then held it three times (and whose acks of the first two leases failed).
func TestReduceKeepsLeasesWhileItFills(t *testing.T) {
	in := mustMemory(t, workqueue.WithLeaseDuration(300*time.Millisecond))
	out := mustMemory(t)
	r, err := workqueue.NewReduce(in, out, 3, joinComma, workqueue.WithFlushAfter(1500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	addAll(t, in, noKey, "a")
	runStages(t, r)
	if diff := cmp.Diff([]string{"a"}, take(t, out, 1)); diff != "" {
		t.Errorf("reduced (-want +got):\n%s", diff)
	}
	waitFor(t, func() bool { s, _ := in.Stats(context.Background()); return s == (workqueue.Stats{}) })
}
