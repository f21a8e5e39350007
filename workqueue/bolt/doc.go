// Package bolt is the durable workqueue.Queue for one machine: a workqueue.Memory whose state
// changes are group-committed to a go.etcd.io/bbolt file before they take effect, so an added item
// survives a process crash, and leased items come back when their leases expire after a restart.
//
// # Lifecycle
//
// Open opens (or creates) the file, recovers the items and starts nothing. The file is locked while
// open: a second Open waits up to WithOpenTimeout.
//
// # Cleanup
//
// Close (or Shutdown, which drains first) commits what is pending and closes the file. Idempotent.
//
// # Concurrency
//
// Safe for concurrent use; throughput grows with the number of concurrent callers because their
// changes share commits (one fsync for many).
package bolt
