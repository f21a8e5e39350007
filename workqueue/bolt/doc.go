// Package bolt is the durable workqueue.Queue for one machine: a workqueue.Memory whose state
// changes are group-committed to a go.etcd.io/bbolt file, so an added item survives a process
// crash.
//
// # Crashes and restarts
//
// Add, Ack (unless WithAsyncAck), Nack, Release and Bury return after their commit. Lease and
// Extend return before it: the lease, or its new deadline, is committed within a few milliseconds
// (a flush 5ms after it, or any earlier commit), and a crash in that window hands the item out
// again at once after the restart, under the same attempt number (or ends the lease at its
// previous deadline). A lease that was committed survives the restart: its item stays leased until
// the last committed deadline, and its holder can go on extending it, then it comes back.
//
// Lease tokens are "<id>.<attempt>@<epoch>", where epoch counts the Opens of the file (each Open
// commits the next one, fsynced even with WithNoSync, before it hands out a lease). A token of the
// current Open is checked as Memory checks its own, but never holds a lease recovered from the
// file; a token of an earlier Open holds a lease only if the file had that lease (item, attempt and
// epoch) when it was opened, and only until that lease ends (an Ack, Nack, Release, Bury or its
// deadline): never a later lease of the item. So the holder of a lease the crash lost gets
// workqueue.ErrLeaseLost and never shares the item's new lease, while the holder of a committed
// lease can Extend and Ack it across restarts. Tokens without an epoch, handed out before epochs
// existed, count as epoch 0, as do the leases stored then. A binary from before epochs opens the
// file only while no record holds a lease with an epoch: when every lease handed out since ended by
// Ack, Nack, Release or Bury. A lease that ran out keeps its record until its item's next lease
// ends so (a Shutdown drains the leases held, not those).
//
// # Memory and disk
//
// The file is the journal of a workqueue.Memory, not a store it reads on demand: Open reads every
// record into RAM, and every payload stays in RAM, as in the file, for as long as its item is kept.
// A live item's goes when it is acked; a dead letter (buried, or past WithMaxAttempts) keeps its
// payload in RAM and in the file, and dead letters accumulate: neither this package nor workqueue
// has a way to remove them (Dead only lists them). So the process needs RAM for the payloads of its
// backlog plus those of every dead letter the file has collected, however old.
//
// # Limits
//
// The queue sets no limit of its own on a key, a payload or a bury reason: each is kept whole in
// its item's record, one bbolt value (which bbolt bounds at 2 GiB less 2 bytes, for the key,
// payload and reason together), and in RAM. A queue served over HTTP takes a key of at most
// workqueue.APIMaxKeyLen (2048) bytes and a payload of at most the API's WithMaxPayload (16 MiB by
// default); workqueue/jetstream takes keys of up to its MaxKeyLen, the same 2048 bytes.
//
// # Metrics
//
// WithRegisterer registers the metrics of the queue's workqueue.Memory (see the workqueue package
// doc), read at scrape time: podblocks_workqueue_queue_items{state}, ..._added_total (since Open),
// ..._expired_leases_total and ..._stats_errors_total, labelled queue="name" with WithQueueName.
// Close unregisters them.
//
// # Lifecycle
//
// Open(ctx, path, ...) opens (or creates) the file, recovers the items and starts nothing; it
// takes ctx first, as workqueue/jetstream's Open does, because it may wait. The file is locked
// while open: a second Open of it, in this process or another, waits up to WithOpenTimeout (5s by
// default) for Close, then returns ErrLocked; or, when its ctx ends first, returns at once.
//
// # Cleanup
//
// Close (or Shutdown, which drains first) waits for a scheduled flush, commits what is pending and
// closes the file. Idempotent.
//
// # Concurrency
//
// Safe for concurrent use; throughput grows with the number of concurrent callers because their
// changes share commits (one fsync for many). A flush runs on a timer goroutine at most flushDelay
// after a lease or async ack that no other commit carried (longer while commits fail: the wait
// doubles with each failure in a row, up to a second); Close stops or waits for it.
package bolt
