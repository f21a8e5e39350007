// Package workqueue is the work-queue pattern of container-based distributed systems: a Queue of
// items with leases, a worker Pool that runs a Handler over it, and ExecWorker, which runs any
// program per item with the paper's run()/mount() contract (WORK_ITEM_FILE in, OUTPUT_DIR out).
//
// Backends implement one interface and pass one conformance suite (workqueuetest.TestQueue):
// Memory (this package: client-go's semantics plus priorities, leases, a ctx-cancellable Lease and
// dead letters), workqueue/bolt (durable in one bbolt file), workqueue/jetstream (NATS JetStream),
// and Client (any of them over the HTTP API that API serves).
//
// LeaseBatch and AckBatch lease and ack many items per call, as a JetStream pull does: each item is
// leased exactly as by Lease (its own token, attempt and deadline; key turns, priorities, delays
// and max attempts as usual), but a backend that implements Batcher (Memory, and so workqueue/bolt)
// reads the clock once per batch, fills the caller's slice without allocating and takes its locks
// per batch where it can: Memory claims up to 64 keyless items of its hot path with one
// compare-and-swap and takes each lease shard's lock once for them, and acks up to 64 keyless
// leases taking each shard's lock once; items from its locked path (keys, delays, nacks, expired
// leases, other priorities, and all of workqueue/bolt's) take the queue's lock once per batch and
// their shard's lock each, and a keyed item's ack takes both locks. For any other Queue they lease
// one item per call and ack one lease at a time. A
// worker that leases a batch holds every item of it while it handles the first, so batches suit
// short handlers; the items' leases run from the batch's lease.
//
// Delivery is at least once: an item is leased to one holder at a time and comes back when its
// lease expires, when it is nacked, or when its holder dies; so handlers must be idempotent.
//
// A Source adds each name its item source lists once while the name stays listed, with the name
// as key; a name listed again after it left the list, and every listed name after a restart, is
// added again (at least once; so is a name whose Add failed but was made, as a Client's can be).
// A name whose GET or Add fails is not marked added, and later Polls try it again, least recently
// tried first, until it is added or leaves the list. A failing name that leaves the list keeps its
// place for 10 Polls off the list, then counts as new (a Source forgets names gone for good): that
// changes only its turn, never how often it is added. But a name listed for single Polls more than
// 10 Polls apart takes its turn behind the names that failed before, each time: while items the
// source leaves unanswered are among them (two in a row end a Poll), it may never be added.
//
// # Lifecycle
//
// Constructors (NewMemory, NewPool, NewExecWorker, NewAPI, NewClient, NewSource, and the pipeline
// stages' NewCopier, NewFilter, ...) validate and start nothing: a bad argument or option value is
// an error wrapping ErrInvalid that names it. All but NewClient take
// WithLogger (default: no logging) and WithRegisterer (default nil: metrics not registered). Pool,
// Source and the pipeline stages are components: Run blocks until ctx ends and returns only after
// every goroutine it started has exited; Pool then drains (in-flight items get WithDrainTimeout to
// finish, the rest are released). A queue is ready when constructed. A Pool's Run also returns, with
// ErrClosed, once the queue closed under it; a Client whose server cannot be reached or is stopping
// returns ErrUnavailable instead (ErrClosed only after its own Close), which a Pool retries until
// the server is back, so that workers outlive a server's restart.
//
// # Cleanup
//
// Close a queue when done (idempotent; blocked Leases return ErrClosed). Memory.Shutdown is
// client-go's ShutDownWithDrain: it closes for new work and waits for leases to end. ExecWorker
// removes each item's work directory, and kills the command's process group when the handler's ctx
// ends (timeout, lost lease, drain budget). Unregister a Pool, a Source or a pipeline stage made
// WithRegisterer once done with it, to take its metrics off the registerer (see Metrics).
//
// # Metrics
//
// WithRegisterer registers a component's metrics (nil, the default: they exist but are not
// registered). A Pool's, labelled pool="name" with WithPoolName:
//
//	podblocks_workqueue_in_flight_items            gauge      items being handled
//	podblocks_workqueue_items_total{outcome}       counter    acked, retried, buried, released, lost
//	podblocks_workqueue_handle_duration_seconds    histogram  one attempt's handler
//	podblocks_workqueue_attempt_number             histogram  the attempt of each lease handled
//	podblocks_workqueue_dead_letters_total         counter    items the pool buried
//	podblocks_workqueue_depth_items                gauge      the queue's Stats().Depth(), at scrape time
//
// A Memory queue's (and so workqueue/bolt's; workqueue/jetstream has the first two), labelled
// queue="name" with WithQueueName, all read from the queue at scrape time (see
// NewStatsCollector), so that Add, Lease and Ack pay nothing for them:
//
//	podblocks_workqueue_queue_items{state}               gauge    ready, delayed, leased, dead (Stats)
//	podblocks_workqueue_queue_stats_errors_total         counter  scrapes whose Stats failed
//	podblocks_workqueue_queue_added_total                counter  items created since NewMemory
//	podblocks_workqueue_queue_expired_leases_total       counter  leases that ran out
//
// A pipeline stage's (Copier, Filter, Splitter, Sharder, Merger, Join, Reduce), labelled
// stage="name": WithStageName's, by default the stage's kind ("copier", ...):
//
//	podblocks_workqueue_stage_items_total{outcome}    counter    input items done with, see below
//	podblocks_workqueue_stage_held_items              gauge      input items leased, not yet done with
//	podblocks_workqueue_stage_add_duration_seconds    histogram  an output add made (_count: items added)
//	podblocks_workqueue_stage_errors_total{call}      counter    failed lease, extend and add calls
//
// An input item's outcome is passed (acked once its adds were made), dropped (acked with nothing
// to add: a Filter's reject, a Splitter's item without parts), buried (split, combine or reduce
// failed, or the output refused an add for good), released (given back: the stage stopped or its
// output closed) or lost (its queue took no ack, bury or release, as when its lease was lost, or a
// Join's waiting part lost its lease: the item comes again). An add the output left unanswered,
// and tried again, is a failed add.
//
// A Source's, labelled source="name" with WithSourceName:
//
//	podblocks_workqueue_source_added_items_total               counter    items added to the queue
//	podblocks_workqueue_source_add_errors_total                counter    adds the queue refused
//	podblocks_workqueue_source_fetch_errors_total{request}     counter    failed GETs of the list or an item
//	podblocks_workqueue_source_fetch_duration_seconds{request} histogram  a GET of the list or an item
//
// where request is list (GET /api/v1/items) or item (GET /api/v1/items/{name}); a GET fails when
// it gets no answer, a status other than 200, or an answer that is not the interface (one of a
// kind other than ItemList for the list, Item for an item, among them). An item whose GET failed is not added; one the
// queue refused (closed, ErrUnavailable) is a failed add, counted again at each Poll that tries it.
// A GET or an add that fails once the Source stopped (its ctx ended) counts neither way.
//
// Pools that share a registerer need WithPoolName, queues WithQueueName, stages of one kind
// WithStageName, and Sources WithSourceName, each its own name; the constructor returns the
// registerer's error otherwise, one that says so.
//
// One rule holds for every component's metrics, as for any collector a Go program registers
// itself: the constructor registers them all or, when the registerer refuses one (a clash with a
// metric registered already), none of them; they then stay registered, a scrape showing the
// component's counts, until the user says the component is done with: Close for a queue
// (Memory, workqueue/bolt, workqueue/jetstream; Memory's Shutdown too), Unregister for a Pool, a
// Source or a pipeline stage. Run neither registers nor unregisters anything, so a Pool not run yet
// shows zeros and a scrape after Run returned still has its totals. Once its metrics are
// unregistered, a component made with the registerer and the name (a queue reopened after a
// failure, a Pool made anew over it) registers its own. Closing or Unregistering twice does no
// harm. ExecWorker and API have no metrics of their own.
//
// # Concurrency
//
// Queues, Pool, API and Client are safe for concurrent use. A Memory queue never leases two items
// with the same key at once; a Pool extends each lease at a third of its length while the handler
// runs, and cancels the handler if the lease is lost.
package workqueue
