package ambassador

import (
	"fmt"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/podblocks/podblocks/internal/rawsys"
	"github.com/podblocks/podblocks/internal/uring"
)

// mailbox is an event loop's inbox: other goroutines post messages and wake the loop through an
// eventfd in its epoll set; the loop takes them a batch at a time and shuts the box when it exits.
type mailbox[M any] struct {
	evfd  int
	spare []M // the loop's: the last batch's slice, reused for the next

	mu     sync.Mutex
	inbox  []M
	woken  bool
	exited bool
}

// open makes the box's eventfd and adds it to the epoll set epfd (edge-triggered, readable).
func (b *mailbox[M]) open(epfd int) error {
	r, _, e := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if e != 0 {
		return fmt.Errorf("eventfd: %w", e)
	}
	b.evfd = int(r)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | epollET, Fd: int32(b.evfd)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, b.evfd, &ev); err != nil {
		syscall.Close(b.evfd)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// post queues m and wakes the loop; false means the loop has exited.
func (b *mailbox[M]) post(m M) bool {
	b.mu.Lock()
	if b.exited {
		b.mu.Unlock()
		return false
	}
	b.inbox = append(b.inbox, m)
	wake := !b.woken
	b.woken = true
	b.mu.Unlock()
	if wake {
		one := uint64(1)
		syscall.RawSyscall(syscall.SYS_WRITE, uintptr(b.evfd), uintptr(unsafe.Pointer(&one)), 8)
	}
	return true
}

// take returns what was posted since the last take; the loop hands the slice back with done.
func (b *mailbox[M]) take() []M {
	var buf [8]byte
	rawsys.Read(b.evfd, buf[:])
	b.mu.Lock()
	msgs := b.inbox
	b.inbox = b.spare[:0]
	b.woken = false
	b.mu.Unlock()
	return msgs
}

// done takes back a batch from take, dropping its references, for reuse.
func (b *mailbox[M]) done(msgs []M) {
	clear(msgs)
	b.spare = msgs[:0]
}

// shut refuses further posts, closes the eventfd and returns what was posted and not taken.
func (b *mailbox[M]) shut() []M {
	b.mu.Lock()
	b.exited = true
	msgs := b.inbox
	b.inbox = nil
	b.mu.Unlock()
	syscall.Close(b.evfd)
	return msgs
}

// loopCore is what every event loop has: an epoll set with its mailbox's eventfd in it, the buffer
// of events, and the tick at which deadlines are checked with the time of the next check.
type loopCore[M any] struct {
	epfd    int
	box     mailbox[M]
	events  []syscall.EpollEvent
	tick    time.Duration
	sweepAt time.Time

	ring    *uring.Ring // nil: the loop sends with one system call per send
	ringErr error       // why ring is nil, when io_uring_setup failed
	counts  *ringCounts // set before open to share; else open makes the loop's own
}

// open makes the epoll set and the mailbox. The tick is a tenth of the shortest of timeouts that is
// set, from 1 ms to 100 ms.
func (c *loopCore[M]) open(timeouts ...time.Duration) error {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	if err := c.box.open(epfd); err != nil {
		syscall.Close(epfd)
		return err
	}
	c.epfd, c.events, c.tick = epfd, make([]syscall.EpollEvent, 256), 100*time.Millisecond
	c.ring, c.ringErr = uring.New(sendRingSize)
	if c.counts == nil {
		c.counts = new(ringCounts)
	}
	for _, d := range timeouts {
		if d > 0 {
			c.tick = min(c.tick, max(d/10, time.Millisecond))
		}
	}
	return nil
}

// poll returns how many events are ready now, in c.events. With spin set and none ready, it first
// gives the CPU away (sched_yield) and polls again, up to pollYields times: with connections open
// the next event is usually a peer's answer moments away, and a loop that blocks pays the sleep
// and wake-up and, on a locked thread in a blocking syscall, the runtime's hand-off of its P. When
// nothing else is runnable this spins pollYields times (microseconds).
func (c *loopCore[M]) poll(spin bool) int {
	n, _ := rawsys.EpollWait(c.epfd, c.events, 0)
	for i := 0; n == 0 && spin && i < pollYields; i++ {
		schedYield()
		n, _ = rawsys.EpollWait(c.epfd, c.events, 0)
	}
	return n
}

// pollYields is how many times poll yields the CPU and polls again before the loop blocks.
const pollYields = 8

// schedYield is sched_yield(2); tests count the calls.
var schedYield = func() { syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0) }

// block waits in epoll_wait for events into c.events and returns how many came: until the next
// sweep when timed, else until an event.
func (c *loopCore[M]) block(timed bool) int {
	msec := -1
	if timed {
		msec = int(max(time.Until(c.sweepAt), time.Millisecond) / time.Millisecond)
	}
	n, _ := rawsys.EpollWait(c.epfd, c.events, msec)
	return n
}

// shut refuses further posts, closes the mailbox, the epoll set and the ring, and returns what was posted
// and not taken.
func (c *loopCore[M]) shut() []M {
	msgs := c.box.shut()
	syscall.Close(c.epfd)
	if c.ring != nil {
		c.ring.Close()
		c.ring = nil
	}
	return msgs
}

// startLoops runs every loop on a goroutine counted in wg.
func startLoops[L interface{ run() }](all []L, wg *sync.WaitGroup) {
	for _, l := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.run()
		}()
	}
}

// sendRingSize is how many sends one io_uring_enter makes at most.
const sendRingSize = 256

// sendBatched makes b's sends through c's ring (uring.Batch.Send), counting them in c.counts, and
// calls each with every send's item and result. Should the ring fail, c goes back to one system
// call per send for good, and warn is told why.
func sendBatched[M, T any](c *loopCore[M], b *uring.Batch[T], each func(item T, r uring.Result, known bool), warn func(string)) {
	enters, err := b.Send(c.ring, func(item T, r uring.Result, known bool) {
		if r.Done {
			c.counts.batched.Add(1)
		}
		each(item, r, known)
	})
	c.counts.enters.Add(int64(enters))
	if err != 0 {
		warn("io_uring_enter failed, sending with one system call per send from now on: " + err.Error())
		c.ring.Close()
		c.ring = nil
	}
}
