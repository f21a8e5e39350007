// Package scatter is a typed scatter/gather: a root sends one request to many shards (leaves),
// gathers their answers and merges them, with the things that matter once there are many leaves:
// deadlines, partial results with a per-shard report, early return at a quorum or coverage,
// replica sets with hedged requests under a budget, canaries, latency probation and C3-style
// replica selection ("The Tail at Scale", Dean & Barroso, CACM 2013; "C3", Suresh et al., NSDI 2015).
//
//	leaves := []scatter.Leaf[Query, Hits]{shard0, shard1, replicaSetOfShard2}
//	f, err := scatter.New(leaves, scatter.TopKMerge(10, better, hitsOf),
//		scatter.WithTimeout(50*time.Millisecond), scatter.WithCoverage(0.95),
//		scatter.WithHedge(scatter.Hedge{Percentile: 0.95}))
//	res, err := f.Do(ctx, q) // res.Out: the top 10; res.Slots: one report per shard
//
// A Leaf is anything with Call(ctx, req) (resp, error); LeafFunc adapts a function, HTTPLeaf
// calls a LeafHandler over HTTP, and a ReplicaSet is one shard served by several replicas.
// RootHandler serves a Fanout over HTTP with the coverage in X-Scatter-* headers. Package
// scattertest has leaves with seeded latency distributions for tests.
//
// # Partial results
//
// Do always returns a Result holding one Slot per shard: the answer, and a Report saying whether
// the shard answered, failed (a leaf's panic is recovered and becomes its error), timed out, was
// cancelled or skipped, which replica answered, whether it was hedged, and its latency. By default
// Do waits for every shard or the deadline and succeeds if one shard answered; WithQuorum and
// WithCoverage return as soon as enough shards answered and cancel the rest; WithFailFast ends on
// the first error.
//
// # Hedging
//
// With WithHedge, a replica-set shard whose first attempt has not answered after a delay (static,
// or a percentile of the shard's recent latency from a streaming Sketch) sends a backup to another
// replica; the first answer wins and the others are cancelled at once. Every backup (hedge or
// failover after an error) spends a token of a budget that earns Hedge.Budget tokens per primary
// call, so extra load stays bounded even when every replica is slow.
//
// # Lifecycle
//
// New validates and starts nothing; a Fanout has no background goroutines. Do starts one
// goroutine per shard (or WithConcurrency workers), plus one per replica attempt and shadow
// request of replica sets.
//
// # Cleanup
//
// Do returns when it has what it needs and cancels the calls still running; a leaf that ignores
// its context is abandoned and its late answer dropped. Wait blocks until every call started by
// a Do that has returned (abandoned calls included) has returned too: call it after the last Do,
// before exiting (tests with goleak do).
//
// # Concurrency
//
// Fanout, ReplicaSet, Sketch, HTTPLeaf, LeafHandler and RootHandler are safe for concurrent use.
// Leaves must be. Merge.Fold runs one call at a time, never after Do returned; Merge.Final runs
// in Do's goroutine. Result and its slots belong to the caller once Do returned.
package scatter
