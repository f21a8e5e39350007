// Package election is leader election with fencing tokens: the paper's election container as a
// library and, through NewHandler and examples/elector, as a localhost HTTP API for any language.
//
// An Elector campaigns through a Backend (Memory in-process, election/etcd for a cluster,
// electiontest.Fake in tests), runs a LeaderFunc for each term it wins, and campaigns again after
// the term ends. Each Term carries a fencing token that strictly increases across terms, cluster
// wide; a protected resource uses a Fence to reject writes carrying an older token, which is what
// makes leadership safe when a paused or partitioned leader wakes up late.
//
// # Lifecycle
//
// New validates and starts nothing. Run blocks: campaign, lead, on loss cancel the LeaderFunc's
// context and wait for it to return, release, campaign again, until its ctx ends. The Elector steps
// down as soon as the backend reports the lease lost, and also when a renewal has not been
// confirmed within the TTL measured on the local monotonic clock (Lease.ValidUntil, less a step-down
// margin of 100ms by default), before the backend's server can hand the lock to someone else.
// Resign hands over at once. Ready is closed
// once the first leader (or "no leader") has been observed.
//
// # Cleanup
//
// Run returns only after the LeaderFunc has returned, the lock has been released (or the release
// timed out: Run then retries it in the background until it succeeds, Run returns, or this
// candidate wins a new term; else the lease expires by its TTL), and its goroutines have exited.
// A Campaign that fails and cannot release the lease it took returns an UnreleasedError, and Run
// retries that lease's Release the same way.
// Observe channels are closed when their ctx ends or Run returns.
//
// # Concurrency
//
// All methods of Elector, Memory and Fence are safe for concurrent use. The LeaderFunc runs in its
// own goroutine, one term at a time. A Fence serialises the writes it guards (Do, Middleware).
package election
