package scatter

import (
	"context"
	"time"
)

// Leaf answers one shard's part of a request. Call must be safe for concurrent use and should
// return promptly once ctx is done; a leaf that does not is abandoned at the fan-out's deadline,
// and its late answer is dropped.
type Leaf[Req, Resp any] interface {
	Call(ctx context.Context, req Req) (Resp, error)
}

// LeafFunc adapts a function to Leaf.
type LeafFunc[Req, Resp any] func(ctx context.Context, req Req) (Resp, error)

// Call calls f(ctx, req).
func (f LeafFunc[Req, Resp]) Call(ctx context.Context, req Req) (Resp, error) { return f(ctx, req) }

// Merge turns the shards' answers into Out. Both funcs are optional; the zero Merge leaves Out at
// its zero value and callers read Result.Slots.
type Merge[Resp, Out any] struct {
	// Init returns the initial accumulator (default: Out's zero value).
	Init func() Out
	// Fold folds one shard's successful answer into acc. It is called once per answer, in the
	// order answers arrive, one call at a time, from the leaves' goroutines (or Do's own, when Do
	// runs the last leaf itself); never after Do returned. Fold must not panic: unlike a leaf's
	// panic, which becomes that shard's error, a Fold panic is not recovered.
	Fold func(acc Out, shard int, resp Resp) Out
	// Final runs once in Do after the fan-out ended, with the folded acc and every slot (the slots
	// that did not answer carry their report). Its error is Do's error.
	Final func(acc Out, slots []Slot[Resp]) (Out, error)
}

// Status is the outcome of one shard in one fan-out.
type Status uint8

const (
	// StatusOK: the shard answered.
	StatusOK Status = iota
	// StatusError: the shard returned an error (or panicked: Err is a *PanicError).
	StatusError
	// StatusTimeout: the shard's call ran past the fan-out's or the leaf's deadline.
	StatusTimeout
	// StatusCanceled: the shard was cancelled because the fan-out ended early (quorum reached, a
	// fail-fast error, or the caller cancelled).
	StatusCanceled
	// StatusSkipped: the shard was never called (canary failed, or the fan-out ended before its
	// goroutine or a concurrency slot got to it). Its Attempts is 0 and its latency is not
	// observed.
	StatusSkipped
)

var statusNames = [...]string{"ok", "error", "timeout", "canceled", "skipped"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "unknown"
}

// Report is what happened to one shard in one fan-out.
type Report struct {
	Status Status
	// Hedged says a backup request was sent; HedgeWon that a backup's answer was used.
	Hedged, HedgeWon bool
	Err              error // nil when Status is StatusOK
	// Latency is the time from the shard's dispatch to its answer (or to the end of the fan-out
	// for shards that did not answer).
	Latency time.Duration
	// Replica is the index of the replica that answered (or was tried last) for replica-set
	// shards; 0 for plain leaves.
	Replica int
	// Attempts is how many calls the shard got: 1 for a plain leaf; primary, hedges and failovers
	// for a replica set. A shard that was called but had not finished when the fan-out ended
	// reports 1 (its first call; backups it sent meanwhile are not counted); a skipped one, 0.
	Attempts int
}

// Slot is one shard's answer and report. Resp is the zero value unless Status is StatusOK.
type Slot[Resp any] struct {
	Resp Resp
	Report
	state uint32 // atomic: 0, slotCalled, slotDone or slotSkipped
}

const (
	slotCalled  = 1 // the shard's goroutine is calling its leaf
	slotDone    = 2 // the leaf published its answer
	slotSkipped = 3 // the fan-out ended first: the leaf is not called
)

// Why says why a fan-out ended.
type Why uint8

const (
	// EndAll: every shard finished.
	EndAll Why = iota
	// EndQuorum: enough shards answered (WithQuorum / WithCoverage).
	EndQuorum
	// EndFailFast: a shard failed under WithFailFast.
	EndFailFast
	// EndContext: the deadline passed or the caller cancelled.
	EndContext
	// EndCanary: a canary shard failed or was late.
	EndCanary
)

var whyNames = [...]string{"all", "quorum", "failfast", "context", "canary"}

func (w Why) String() string {
	if int(w) < len(whyNames) {
		return whyNames[w]
	}
	return "unknown"
}

// Result is one fan-out's outcome.
type Result[Resp, Out any] struct {
	// Out is the merged answer.
	Out Out
	// Slots holds one slot per shard, in the order of the leaves given to New.
	Slots []Slot[Resp]
	// Answered is how many shards answered (StatusOK).
	Answered int
	// Hedges is how many backup requests were sent.
	Hedges int
	// Why says why the fan-out ended.
	Why Why
}

// Coverage is the fraction of shards that answered.
func (r *Result[Resp, Out]) Coverage() float64 {
	if len(r.Slots) == 0 {
		return 0
	}
	return float64(r.Answered) / float64(len(r.Slots))
}
