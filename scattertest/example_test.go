package scattertest_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/podblocks/podblocks/scatter"
	"github.com/podblocks/podblocks/scattertest"
)

// A leaf answers with its respond func once its latency has passed, and counts its calls.
func ExampleNewLeaf() {
	leaf := scattertest.NewLeaf(1, scattertest.Constant(time.Millisecond), func(q string) string { return "hits for " + q })
	got, err := leaf.Call(context.Background(), "kalo")
	fmt.Println(got, err)
	fmt.Printf("%+v\n", leaf.Stats())
	// Output:
	// hits for kalo <nil>
	// {Calls:1 Completed:1 Failed:0 Canceled:0 Inflight:0 Lingered:0s}
}

// A replica set over a failing replica and a healthy one answers from the healthy one.
func ExampleLeaf_SetFailRate() {
	dead := scattertest.NewLeaf(1, scattertest.Constant(time.Millisecond), func(int) string { return "dead" })
	dead.SetFailRate(1)
	healthy := scattertest.NewLeaf(2, scattertest.Constant(time.Millisecond), func(int) string { return "healthy" })
	rs, err := scatter.NewReplicaSet[int, string](dead, healthy)
	if err != nil {
		panic(err)
	}
	_, err = dead.Call(context.Background(), 0)
	fmt.Println(errors.Is(err, scattertest.ErrInjected))
	got, err := rs.Call(context.Background(), 0)
	fmt.Println(got, err)
	// Output:
	// true
	// healthy <nil>
}
