// Package jetstream is the distributed workqueue.Queue on NATS JetStream: a WorkQueue-retention
// stream WQ_<name> with one durable pull consumer. The lease is the consumer's AckWait, Extend is
// InProgress, Nack is NakWithDelay, and an item buried (or out of attempts) is published to the
// stream WQ_<name>_DEAD and acked. With WithReplicas(3) on a 3-node cluster, an add that returned
// nil survives the loss of a node.
//
// An item with a key has the key's base64 in its subject, so that the stream (one message per
// subject) keeps one item per key, and the key itself in the header HeaderKey, or, for a key a
// NATS header would not carry unchanged (control bytes, surrounding spaces), its base64 in the
// header HeaderKeyB64; either way Item.Key and DeadItem.Key are the key byte for byte.
//
// # Lifecycle
//
// Open creates or updates the streams and the consumer (it takes a ctx because it talks to the
// server) and starts nothing. The *nats.Conn stays the caller's.
//
// # Cleanup
//
// Close ends blocked Leases with workqueue.ErrClosed and naks messages pulled but not yet handed
// out, including one the server has sent to a blocking pull as Close stops it (the pull's
// subscription is drained, not dropped), so that other consumers get them at once rather than after
// the lease duration; leases already handed out can still be acked, and expire on the server
// otherwise. One the server has picked for the pull but not yet sent when the pull's interest goes
// is not delivered, and comes back after the lease duration (see waitPull in pull.go).
//
// The queue keeps what it needs of a lease handed out (the item, payload and all) until the
// server confirms its end, or, at the latest, about a second after its deadline: one never ended,
// or whose end failed and was not retried (its connection gone for good), is forgotten then,
// whether or not the queue is used again, before or after Close.
//
// With a fetch batch, the messages a no-wait pull brought wait for the next Leases however long
// that takes (one that waited more than a quarter of the lease is refreshed as it is handed out). A
// no-wait pull of which nothing is waiting 2s after it started is dropped as lost (a reconnect); a
// message the server sends it after that comes back after the lease duration.
//
// A Lease that gives up (its ctx done) while waiting leaves its pull request running, for up to 5s
// or until ctx's deadline, to a goroutine: a message the server delivers to it is handed to the next
// Lease, or nacked if none comes within a second (a quarter of the lease, if shorter), so it is never
// stranded until AckWait. A nacked delivery still counts: NATS counts every delivery toward the
// item's attempt number, and nothing takes one back. Close waits for these goroutines.
//
// # Lease errors
//
// A Lease pulls again when the server ends its pull (the no-wait pull of a fetch batch, or the
// blocking pull of a Lease waiting on an empty queue) with a status that passes with the server's
// condition: 409 Leadership Change, 409 Server Shutdown (the client reconnects to another node of a
// cluster), 409 Exceeded MaxWaiting, and 503 (no responders: JetStream is unavailable for a moment,
// as during a failover). It waits 50ms before the first new pull, doubling to 1s, and logs these at
// most once a second; its ctx and Close end the wait at once. Other statuses (409 Consumer Deleted,
// 400 Bad Request, 409 Message Size Exceeds MaxBytes, ...) end the Lease with an error naming the
// status, and a connection closed under a waiting Lease ends it at once with an error wrapping
// workqueue.ErrClosed and nats.ErrConnectionClosed (see Closed connection).
//
// A deleted consumer (or stream) ends Leases with an error wrapping ErrConsumerGone: 409 Consumer
// Deleted for a pull waiting as it goes; after that, pulls get 503 as in a failover, so on a 503
// the queue asks the server for the consumer (at most once a second, for up to a second) and ends
// the Lease if the server says it is not found. No answer counts as a failover. Open makes the
// consumer again.
//
// # Unavailable
//
// While the server cannot be reached or does not answer, the calls that talk to it return an error
// wrapping workqueue.ErrUnavailable, as a workqueue.Client's calls do while its server restarts, so
// that a workqueue.Pool retries an item's Ack, Nack or Bury until the server is back rather than
// give the item up: the connection is reconnecting and cannot take the request (it has no reconnect
// buffer, nats.ReconnectBufSize(-1), or the buffer is full; a Nack is not put in the buffer at all,
// see Queue.Nack); a request got no answer within the call's bound (5s when its ctx has no
// deadline; a call whose own ctx ended returns that ctx's error); no responder answered (JetStream
// not up, as in a failover); or the JetStream cluster is temporarily unavailable. Ack, Nack and
// Extend wait for the server's answer (Ack and Nack not with WithAsyncAck: they then say so only
// when the connection cannot take their message), so an Extend's deadline is one the server has. A
// Lease says so when it cannot send its pull; one whose pull the connection buffers waits for the
// server.
//
// # Closed connection
//
// A closed connection (its owner's Close, or nats.go giving up reconnecting, after
// nats.MaxReconnects tries) is not unavailable, since no retry on it can succeed: every call on
// it returns an error wrapping workqueue.ErrClosed and nats.ErrConnectionClosed (or
// nats.ErrConnectionDraining while it drains towards closing), as a queue after Close does, so
// that a workqueue.Pool over the queue stops, its Run returning that error, rather than lease
// again forever. Open the queue again on a new connection.
//
// # Metrics
//
// WithRegisterer registers podblocks_workqueue_queue_items{state} and
// podblocks_workqueue_queue_stats_errors_total, labelled queue="<name>" (see
// workqueue.NewStatsCollector): each scrape reads Stats, three JetStream API requests bounded by 2s;
// a failed one is counted, logged once a run of failures, and leaves the gauges out of that scrape.
// A closed connection is not a failure: from the first scrape that finds it, the gauges are left
// out and nothing more is counted or asked of the server. Close unregisters them.
//
// # Concurrency
//
// Safe for concurrent use, and any number of processes may open the same queue name: they share
// the consumer, and each message is leased to one of them at a time. A lease is held by the Queue
// that issued it: Extend, Ack, Nack and Bury of its token on another Queue (another process, or
// this one reopened) return ErrLeaseLost, and the item comes back after its AckWait. So a service
// that hands leases to remote workers (examples/workqueue serve) runs one Queue per name, and its
// restart costs the items in flight a redo.
//
// Uses of one lease take turns: an Ack, Nack, Extend or Bury that begins while another waits for
// the server waits for that one's answer (within its ctx and the lease's deadline). After an end
// the server confirmed, it gets ErrLeaseLost; after one that failed (NATS unreachable), or an
// Extend, it goes ahead, so that a caller can retry an end that failed. A Nack whose nak went out
// but got no answer is the exception: the server acks a delivery by its item alone, so the same
// nak sent again once the item may be out again would end its next holder's delivery. Nothing is
// sent on the lease again: a Nack retried on it returns nil at once (the item comes back after
// the delay or the lease), an Ack, Extend or Bury gets ErrLeaseLost (see Queue.Nack).
//
// # Expired leases across processes
//
// The server applies an ack, nak, in-progress or term to the delivery of the item that is pending
// on the consumer when it arrives, whatever delivery its reply subject names: nats-server
// (v2.15) looks the delivery up by stream sequence alone (processAckMsg and progressUpdate in
// consumer.go; processNak also drops a nak whose consumer sequence is at or below the ack floor),
// answers an AckSync of an earlier delivery as it answers the current one's, and the JetStream API
// has no ack conditional on the delivery count. Within one Queue a redelivery ends the earlier
// leases of its item (their Ack, Nack, Extend and Bury get ErrLeaseLost). Across Queues it
// cannot: a holder's Queue refuses its lease from the lease's deadline on, as that Queue reckons
// it, while the server redelivers once AckWait has run out as the server reckons it, so a use of
// the lease by its first holder acts on the next holder's delivery when it reaches the server
// after the server redelivered the item. That happens in two cases, and only in them:
//
//   - The lease came from a blocking pull (a Lease that found the queue empty and waited, or the
//     message of a pull whose Lease gave up, handed to the next Lease): its deadline runs from when
//     the message reached the Lease, later than the server sent it, and started AckWait, by the
//     message's transit and the time it waited in nats.go's subscription. The last that long of
//     the lease, as the Queue reckons it, comes after the server's AckWait ran out. A lease of a
//     fetch batch runs from when its pull was sent, and a deadline that an Extend (or the refresh
//     of a message that waited in a batch) set runs from when the in-progress was sent: both
//     start before the server's clock does, and leave no such window.
//   - The use went out before the deadline and reached the server after it: the message's transit
//     to the server, or, for an Ack, Extend or Bury while the connection reconnects, the time it
//     waits in nats.go's reconnect buffer, as long as the outage lasts (a Nack is not buffered,
//     see Queue.Nack; the connection can break just after it looked, though). An Extend whose
//     answer comes after the deadline returns ErrLeaseLost, but its in-progress has gone out.
//
// On the next holder's delivery, the first holder's Ack acks the item (its work was done; the next
// holder's Ack then succeeds and does nothing), an Extend pushes its AckWait out, a Bury acks it
// and adds a dead letter, and a Nack makes the server deliver it again after the delay while the
// next holder still works on it: a third holder at once. A holder that extends its lease well
// before the deadline, as a workqueue.Pool does (every third of what is left of it), and ends it
// before the deadline by more than the transit, never reaches the window; handlers must be
// idempotent in any case (the queue delivers at least once).
package jetstream
