//go:build linux

package twemproxy

import (
	"syscall"

	"go.uber.org/zap"

	"github.com/podblocks/podblocks/internal/uring"
)

// replyRingSize is how many client writes one io_uring_enter makes at most.
const replyRingSize = 64

// replyRing writes the replies of a poller round to their clients in one io_uring_enter instead
// of one write(2) each (see internal/uring for why: a write that wakes the client on the poller's
// CPU has the poller preempted as the call returns, before it wrote the other clients). It
// belongs to the poller's goroutine. Where io_uring is refused (uring.New fails) or fails later,
// the clients are written with one write each, as without it.
type replyRing struct {
	ring  *uring.Ring
	batch uring.Batch[*client]
	cs    []*client // the clients of the chunk being written
	log   *zap.Logger
}

// newReplyRing returns the ring writer of a pool's poller; its ring is nil where io_uring is
// refused, which is logged once (at Info: the writes then cost one system call each).
func newReplyRing(log *zap.Logger) *replyRing {
	ring, err := uring.New(replyRingSize)
	if err != nil {
		log.Info("io_uring unavailable: writing replies with one system call per client", zap.Error(err))
		ring = nil
	}
	return &replyRing{ring: ring, log: log}
}

// close releases the ring; the poller's loop calls it as it ends.
func (rr *replyRing) close() {
	if rr.ring != nil {
		rr.ring.Close()
		rr.ring = nil
	}
}

// writeAll writes the replies waiting in the output of the clients of cs (each once) and clears
// cs, as dirtySet.flush does.
func (rr *replyRing) writeAll(cs []*client) {
	for len(cs) > 0 {
		if rr.ring == nil {
			for i, c := range cs {
				c.mu.Lock()
				c.writeLocked()
				c.mu.Unlock()
				cs[i] = nil
			}
			break
		}
		k := min(len(cs), rr.ring.Entries())
		rr.cs = cs[:k]
		rr.hold(0)
		clear(cs[:k])
		cs = cs[k:]
	}
	rr.cs = nil
}

// hold takes the mutex and holds the descriptor (through its raw connection, so that it cannot be
// closed and its number reused) of rr.cs[i] if it has replies to write, queues its output, and
// goes on with the next client; once every client is held, it makes the queued writes in one
// io_uring_enter, and each client's outcome is settled as the stack unwinds. A client with nothing
// to queue (or while the ring is gone) is written as without the ring, and let go first.
func (rr *replyRing) hold(i int) {
	if i == len(rr.cs) {
		if rr.batch.Len() > 0 {
			rr.send()
		}
		return
	}
	c := rr.cs[i]
	w := &c.ringWrite
	if w.held {
		rr.hold(i + 1) // c is in the chunk twice (dirtySet only drops repeats in a row): held already
		return
	}
	c.mu.Lock()
	if rr.ring == nil || c.stalled || c.broken || len(c.out) == 0 || c.nb == nil {
		c.writeLocked()
		c.mu.Unlock()
		rr.hold(i + 1)
		return
	}
	if w.hold == nil {
		w.hold = func(fd uintptr) bool {
			w.owner.batch.Add(c, int(fd), c.out)
			w.state = ringQueued
			w.owner.hold(w.next)
			return true
		}
	}
	w.owner, w.next, w.state, w.held = rr, i+1, ringNone, true
	// An error (the connection was closed) leaves c not queued: writeLocked then fails as the
	// write would have.
	_ = c.nb.raw.Write(w.hold)
	w.owner = nil
	if w.state == ringNone {
		rr.hold(i + 1)
	}
	w.held = false
	c.settleRingLocked()
	c.mu.Unlock()
}

// send makes the queued writes; each client's outcome is settled by hold.
func (rr *replyRing) send() {
	_, err := rr.batch.Send(rr.ring, func(c *client, res uring.Result, known bool) {
		switch {
		case res.Done:
			c.ringWrite.state, c.ringWrite.n, c.ringWrite.err = ringDone, res.N, res.Err
		case known:
			c.ringWrite.state = ringNone // not made: written with write(2)
		default:
			c.ringWrite.state = ringLost
		}
	})
	if err != 0 {
		rr.log.Warn("io_uring_enter failed, writing replies with one system call per client from now on", zap.Error(err))
		rr.ring.Close()
		rr.ring = nil
	}
}

// ringWrite is a client's write through the poller's ring, under its mu.
type ringWrite struct {
	state int8          // ringNone, ringQueued, ringDone or ringLost
	n     int           // ringDone: the bytes written
	err   syscall.Errno // ringDone: the write's error
	owner *replyRing    // the ring writer holding the client, for hold
	next  int           // the index of the client hold goes on with
	held  bool          // hold holds the client (used by the poller's goroutine only)
	hold  func(fd uintptr) bool
}

// The states of a client's write through the poller's ring.
const (
	ringNone   = iota // not made through the ring: writeLocked writes
	ringQueued        // queued, not made yet
	ringDone          // made: n bytes written, or err
	ringLost          // the kernel took it, but its outcome was lost: the bytes may have gone out
)

// settleRingLocked applies the outcome of c's write through the ring and then writes what is
// left as writeLocked does (the rest of a short write, or all of a write the ring did not make).
// A write whose outcome is lost closes the connection: writing again could repeat replies.
func (c *client) settleRingLocked() {
	w := &c.ringWrite
	switch w.state {
	case ringDone:
		switch w.err {
		case 0:
			k := copy(c.out, c.out[w.n:])
			c.out = c.out[:k]
		case syscall.EAGAIN:
		default:
			c.breakLocked()
		}
	case ringLost:
		c.breakLocked()
	}
	w.state = ringNone
	c.writeLocked()
}
