package uring

import "syscall"

// Result is one send's outcome: bytes sent, or the error (EAGAIN: the socket buffer is full).
type Result struct {
	N    int
	Err  syscall.Errno
	Done bool // the send completed; false for a send the ring did not make (see Batch.Send)
}

// Outcome is what a send's result, as Batch.Send reports it, leaves to a caller that makes with
// one system call per send what the ring did not: n bytes went out (the caller sends the rest),
// and err, if not zero, is the send's failure (EAGAIN: the socket buffer is full, wait until it is
// writable), or EIO when known is false (the ring may or may not have made the send: sending again
// could repeat bytes, not sending could lose them, so the caller must end the connection). A send
// the ring did not make, or that was interrupted (EINTR), is (0, 0): the caller makes it.
func (r Result) Outcome(known bool) (n int, err syscall.Errno) {
	switch {
	case !r.Done && !known:
		return 0, syscall.EIO
	case !r.Done, r.Err == syscall.EINTR:
		return 0, 0
	case r.Err != 0:
		return 0, r.Err
	}
	return r.N, 0
}

// Batch is the sends of a pass, each with the item it is for (what the caller needs to apply its
// result). Its zero value is empty and ready.
type Batch[T any] struct {
	items []T
	fds   []int
	bufs  [][]byte
	res   []Result
}

// Add queues a send of p (non-empty) to fd for item. p must stay unchanged until Send returns.
func (b *Batch[T]) Add(item T, fd int, p []byte) {
	b.items, b.fds, b.bufs = append(b.items, item), append(b.fds, fd), append(b.bufs, p)
}

// Len is how many sends are queued.
func (b *Batch[T]) Len() int { return len(b.items) }

// Send makes the queued sends through r, r.Entries() per io_uring_enter, calls each with every
// send's item and result in the order they were added, and empties b. A result not Done was not
// made, or, when known is false, may or may not have been (io_uring_enter failed after the kernel
// took it): the caller cannot tell whether its bytes went out. enters counts the io_uring_enter
// calls made. A non-zero err is the ring's failure: the sends after it are left not done (known),
// and the caller must Close r and send with one system call per send from then on. A nil r makes
// no send.
func (b *Batch[T]) Send(r *Ring, each func(item T, res Result, known bool)) (enters int, err syscall.Errno) {
	step := len(b.fds)
	if r != nil {
		step = max(r.Entries(), 1) // a closed ring has no entries: its SendAll fails with EBADF
		if len(b.res) < step {
			b.res = make([]Result, step)
		}
	}
	for start := 0; start < len(b.fds); start += step {
		end := min(start+step, len(b.fds))
		var res []Result // stays empty once the ring failed: the sends are left undone
		known := true
		if r != nil && err == 0 {
			res = b.res[:end-start]
			calls, taken, e := r.SendAll(b.fds[start:end], b.bufs[start:end], res)
			enters += calls
			known, err = taken, e
		}
		for i, item := range b.items[start:end] {
			var rs Result
			if i < len(res) {
				rs = res[i]
			}
			each(item, rs, known)
		}
	}
	clear(b.items)
	clear(b.bufs)
	b.items, b.fds, b.bufs = b.items[:0], b.fds[:0], b.bufs[:0]
	return enters, err
}
