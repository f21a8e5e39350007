//go:build linux

package twemproxy

import (
	"errors"
	"syscall"
	"testing"
	"time"
)

// A client whose connection was closed, and whose descriptor number another socket took since,
// must not be registered in the epoll set: the registration must run while the descriptor is
// held (inside the raw connection's Control), so it fails on the closed connection instead of
// registering the other socket under this client. The close here falls in the window of
// closeConn, between the socket's close and release setting kickOut.
func TestAdoptClosedClientRegistersNoReusedDescriptor(t *testing.T) {
	p := &pool{}
	cp := newClientPoller(p)
	if cp == nil {
		t.Skip("no epoll set")
	}
	t.Cleanup(func() { cp.file.Close() })
	a, _ := tcpPair(t)
	c := newClient(p, a)
	c.rr, c.fd = newRawReader(a) // the goroutine's first adopt, whose registration failed, set them
	if c.rr == nil {
		t.Fatal("no raw reader on a TCP connection")
	}
	a.Close()
	// Take the lowest free descriptor numbers until c's old number is reused.
	reused := -1
	for range 256 {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Close(fd) })
		if fd == int(c.fd) {
			reused = fd
			break
		}
	}
	if reused < 0 {
		t.Fatalf("descriptor %d was not reused", c.fd)
	}
	if cp.adopt(c) {
		t.Fatalf("adopt registered descriptor %d, now another socket's, for a closed client", reused)
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.clients[c.fd] != nil {
		t.Fatalf("the closed client is in the poller's map under descriptor %d", reused)
	}
}

// A client adopted after the poller's epoll set was closed must not be registered in the epoll
// set that took its descriptor number since (another pool's poller): epoll_ctl must run while the
// set's descriptor is held (inside its raw connection's Control), so it fails on the closed set.
func TestAdoptAfterPollerClosedRegistersInNoReusedEpollSet(t *testing.T) {
	p := &pool{}
	cp := newClientPoller(p)
	if cp == nil {
		t.Skip("no epoll set")
	}
	epfd := -1
	if err := cp.raw.Control(func(fd uintptr) { epfd = int(fd) }); err != nil {
		t.Fatal(err)
	}
	cp.file.Close()
	// Take the lowest free descriptor numbers with epoll sets until the closed set's is reused.
	other := -1
	for range 256 {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Close(fd) })
		if fd == epfd {
			other = fd
			break
		}
	}
	if other < 0 {
		t.Fatalf("descriptor %d was not reused", epfd)
	}
	a, _ := tcpPair(t)
	c := newClient(p, a)
	if cp.adopt(c) {
		t.Error("adopt reported a client registered in a closed poller")
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: c.fd}
	if err := syscall.EpollCtl(other, syscall.EPOLL_CTL_ADD, int(c.fd), &ev); err == syscall.EEXIST {
		t.Fatalf("the client's socket was registered in epoll set %d, which took the closed poller's descriptor", other)
	} else if err != nil {
		t.Fatal(err)
	}
}

// A session killed while its goroutine first registers it with the poller leaves no entry in the
// poller's map once the goroutine is done: kill's removal from the map can run before the
// registration adds the entry (the registration holds the descriptor, so kill's close waits for
// it and the registration succeeds).
func TestKilledSessionLeavesNoMapEntry(t *testing.T) {
	p := &pool{}
	cp := newClientPoller(p)
	if cp == nil {
		t.Skip("no epoll set")
	}
	t.Cleanup(func() { cp.file.Close() })
	st := &poolState{cfg: &PoolConfig{}, poller: cp}
	sc := newServerConn(&server{}, st)
	a, b := tcpPair(t)
	t.Cleanup(func() { b.Close() })
	s := &session{sc: sc, conn: a, done: make(chan struct{}), resume: make(chan resumeReason, 1)}
	s.nb, s.rd = rawIOFor(a), rawIOFor(a)
	s.setPollReader()
	sc.sess = s
	killed := make(chan struct{})
	s.register = func(uintptr) {
		go func() {
			defer close(killed)
			var ds dirtySet
			sc.kill(s, ErrClosed, false, &ds)
			ds.flush()
		}()
		for {
			sc.mu.Lock()
			dead := s.dead
			sc.mu.Unlock()
			if dead {
				break
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond) // kill takes s out of the map, then its close waits for this Control
		s.regErr = cp.register(&s.pollClient, nil, s)
	}
	go sc.readLoop(s)
	<-s.done
	<-killed
	cp.mu.Lock()
	n := len(cp.sessions)
	cp.mu.Unlock()
	if n != 0 {
		t.Errorf("%d dead sessions left in the poller's map", n)
	}
}

// enterFailingWhileClaimed runs e.enter with a registration that fails after the poller claimed e
// from a stale event (pollIdle to pollBusy), and that the poller then, after a while, finishes by
// storing end (and, for pollOwn, handing e back through resume with resumeStop). It returns what
// enter reported, e's state when it returned, and e's state once the poller is done.
func enterFailingWhileClaimed(t *testing.T, end int32) (entered bool, state, after int32, resume chan resumeReason) {
	a, _ := tcpPair(t)
	e := &pollClient{}
	if e.rr, e.fd = newRawReader(a); e.rr == nil {
		t.Fatal("no raw reader on a TCP connection")
	}
	resume = make(chan resumeReason, 1)
	poller := make(chan struct{})
	e.register = func(uintptr) {
		if !e.pollState.CompareAndSwap(pollIdle, pollBusy) {
			t.Error("enter did not make e idle before registering it")
		}
		e.regErr = errors.New("registration failed")
		go func() {
			defer close(poller)
			time.Sleep(50 * time.Millisecond) // the poller reads e meanwhile
			e.pollState.Store(end)
			if end == pollOwn {
				resume <- resumeStop
			}
		}()
	}
	entered = e.enter()
	state = e.pollState.Load()
	<-poller
	return entered, state, e.pollState.Load(), resume
}

// A registration that fails after the poller claimed the connection from a stale event must not
// take the read side back while the poller reads it: enter waits for the poller to be done, and
// then either the poller handed it back through resume (enter reports true: the goroutine waits
// there, as for any hand-back) or left it idle (enter takes it back and reports false).
func TestEnterFailingWhilePollerReads(t *testing.T) {
	t.Run("handed back", func(t *testing.T) {
		entered, state, _, resume := enterFailingWhileClaimed(t, pollOwn)
		if !entered {
			t.Fatalf("enter reported the goroutine reads (state %d) while the poller read the connection and then handed it back", state)
		}
		select {
		case why := <-resume:
			if why != resumeStop {
				t.Fatalf("resume = %d, want the poller's resumeStop", why)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no hand-back in resume")
		}
	})
	t.Run("left idle", func(t *testing.T) {
		entered, state, after, resume := enterFailingWhileClaimed(t, pollIdle)
		if entered || state != pollOwn || after != pollOwn {
			t.Fatalf("enter = %v with state %d (%d once the poller is done) after a failed registration, the poller not handing back; want false, pollOwn (pollOwn)", entered, state, after)
		}
		if len(resume) != 0 {
			t.Fatal("a hand-back in resume")
		}
	})
}
