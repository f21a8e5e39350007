// Package scattertest provides leaves with seeded, programmable latency distributions (constant,
// uniform, bimodal, lognormal; "all slow" is a slow Constant on every leaf), failure rates and
// hanging behaviour for testing code built on package scatter, and TestLeaf, the conformance suite
// for scatter.Leaf implementations.
// Under testing/synctest the latencies are exact in the bubble's fake time, so runs are
// deterministic and take no real time.
//
// # Lifecycle
//
// Leaves are plain values: nothing to start or stop.
//
// # Cleanup
//
// A call ends when its latency passed or its context ended (unless SetIgnoreContext), so nothing
// outlives the calls.
//
// # Concurrency
//
// Leaf is safe for concurrent use; draws come from one seeded generator per leaf.
package scattertest
