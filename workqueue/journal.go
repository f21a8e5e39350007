package workqueue

import "time"

// Record is the full state of one item, as a Journal stores it.
type Record struct {
	ID        uint64
	Key       string
	Payload   []byte
	Priority  int
	Attempt   int       // leases so far
	NotBefore time.Time // zero: ready as soon as its key allows
	Deadline  time.Time // non-zero: leased until then (a lease is renewed on recovery until it expires)
	Added     time.Time
	Dead      bool   // buried
	Reason    string // why it was buried
}

// ChangeOp is what a Change does to a record.
type ChangeOp uint8

// The changes a Memory queue hands to its Journal.
const (
	OpPut    ChangeOp = iota + 1 // store (insert or replace) Record
	OpDelete                     // remove the record with Record.ID (acked)
	OpBury                       // remove the live record and store it as dead
	// OpExtend stores Record, a lease's new deadline, only if the stored record holds that lease
	// (the same attempt, leased): an Extend that lost a race with the lease's end changes nothing.
	// The lease stays the one stored, from whichever run of the queue it was handed out by.
	OpExtend
)

// Change is one state change of an item.
type Change struct {
	Op     ChangeOp
	Record Record
}

// Journal makes a Memory queue durable: Memory calls Commit outside its lock, possibly from many
// goroutines at once, and Commit must return only once the changes are durable. An item becomes
// visible to Lease only after the Commit of its Add (or Nack) returned, so a crash never loses an
// added item; a crash after a lease but before the ack's Commit redelivers the item (at least once).
// workqueue/bolt is the implementation; WithJournal plugs one in.
type Journal interface {
	Commit(changes []Change) error
}

// LazyJournal is a Journal that can also take changes without waiting for them to be durable: they
// go into its next commit, in order. Memory uses it for leases (an attempt count reaches the journal
// with the next commit, so a crash right after a lease can hand the item out again under the same
// attempt number) and so saves one synchronous commit per item.
type LazyJournal interface {
	Journal
	CommitLater(changes []Change)
}
