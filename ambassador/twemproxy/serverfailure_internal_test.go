package twemproxy

import (
	"net"
	"os"
	"syscall"
	"testing"
)

// A server failure that fails many requests, here a dial that fails the requests waiting for it,
// makes their *ServerError once, not once a request: each request gets the same one, and failing
// 64 requests allocates no more than failing one. The old code made one, with its text, for each.
func TestServerFailureErrorMadeOnce(t *testing.T) {
	c := &client{}
	// The requests are fragments of a request that never completes, so that finishing them
	// writes no reply and allocates nothing else.
	parent := &Request{c: c}
	rs := make([]*Request, 64)
	for i := range rs {
		rs[i] = &Request{c: c, parent: parent}
	}
	sc := &serverConn{}
	waiting := make([]*Request, 0, len(rs))
	dialErr := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	fail := func(n int) {
		parent.left = n + 1
		sc.waiting = append(waiting[:0], rs[:n]...)
		sc.failWaiting(dialErr)
	}
	one := testing.AllocsPerRun(20, func() { fail(1) })
	many := testing.AllocsPerRun(20, func() { fail(len(rs)) })
	t.Logf("allocations failing 1 request: %v, %d requests: %v", one, len(rs), many)
	if many > one {
		t.Errorf("failing %d requests for one dial error allocated %v times, failing one %v times: want no more",
			len(rs), many, one)
	}
	se, ok := rs[0].Err().(*ServerError)
	if !ok || se.Text != "Connection refused" || se.Err != dialErr {
		t.Fatalf("a request's error is %#v, want the *ServerError \"Connection refused\" of the dial's error", rs[0].Err())
	}
	for i, r := range rs {
		if r.Err() != se {
			t.Fatalf("request %d's error is %p, request 0's %p: want the same one", i, r.Err(), se)
		}
	}
}
