package scatter_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/podblocks/podblocks/ambassador"
	"github.com/podblocks/podblocks/scatter"
)

// A shard whose replicas come from an ambassador Source follows its changes.
func TestDynamicReplicaSetFollowsSource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := ambassador.NewStatic(ambassador.Endpoint{Addr: "a:1"}, ambassador.Endpoint{Addr: "b:1"})
		eps := func() ([]string, <-chan struct{}) {
			es, ch := src.Endpoints()
			out := make([]string, len(es))
			for i, e := range es {
				out[i] = e.Addr
			}
			return out, ch
		}
		var built atomic.Int32
		newLeaf := func(addr string) scatter.Leaf[int, string] {
			built.Add(1)
			return scatter.LeafFunc[int, string](func(ctx context.Context, _ int) (string, error) {
				time.Sleep(time.Millisecond)
				return addr, nil
			})
		}
		shard, err := scatter.NewDynamicReplicaSet(eps, newLeaf)
		if err != nil {
			t.Fatal(err)
		}
		f, err := scatter.New([]scatter.Leaf[int, string]{shard}, scatter.Merge[string, struct{}]{},
			scatter.WithSelection(scatter.SelectRoundRobin), scatter.WithHedge(scatter.Hedge{Delay: 10 * time.Millisecond}))
		if err != nil {
			t.Fatal(err)
		}
		seen := func(n int) string {
			got := map[string]bool{}
			for range n {
				res, err := f.Do(t.Context(), 0)
				if err != nil {
					t.Fatal(err)
				}
				got[res.Slots[0].Resp] = true
			}
			var keys []string
			for _, k := range []string{"a:1", "b:1", "c:1"} {
				if got[k] {
					keys = append(keys, k)
				}
			}
			return strings.Join(keys, ",")
		}
		if got := seen(4); got != "a:1,b:1" {
			t.Errorf("answers from %s, want a:1,b:1", got)
		}
		src.Set(ambassador.Endpoint{Addr: "b:1"}, ambassador.Endpoint{Addr: "c:1"})
		if got := seen(4); got != "b:1,c:1" {
			t.Errorf("after the change, answers from %s, want b:1,c:1", got)
		}
		if built.Load() != 3 {
			t.Errorf("built %d leaves, want 3 (b:1 reused)", built.Load())
		}
		src.Set()
		res, err := f.Do(t.Context(), 0)
		if !errors.Is(err, scatter.ErrShortCoverage) || !errors.Is(res.Slots[0].Err, scatter.ErrNoReplicas) {
			t.Errorf("with no endpoints: err %v, slot err %v; want ErrShortCoverage, ErrNoReplicas", err, res.Slots[0].Err)
		}
		if _, err := shard.Call(t.Context(), 0); !errors.Is(err, scatter.ErrNoReplicas) {
			t.Errorf("Call with no endpoints = %v", err)
		}
		f.Wait()
	})
}
