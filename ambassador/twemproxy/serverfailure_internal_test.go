package twemproxy

import (
	"fmt"
	"io"
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

// A server failure's error, made once for all the requests it fails, costs two allocations: the
// *ServerError and its text (strerror's copy of Go's text with a capital). The old code made two
// more, for the targets of errors.As, which escaped to the heap: four for an errno, three for a
// closed connection.
func TestServerErrorAllocations(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		name string
		err  error
		text string
		most float64
	}{
		{"refused dial", refused, "Connection refused", 2},
		{"reset read", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, "Connection reset by peer", 2},
		{"timed-out dial", &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}, "Connection timed out", 2},
		{"bad response", fmt.Errorf("%w: %q", ErrBadResponse, "x"), "Invalid argument", 2},
		{"closed by the server", io.EOF, "unknown", 1},
	} {
		se, ok := serverError(tc.err).(*ServerError)
		if !ok || se.Text != tc.text || se.Err != tc.err {
			t.Errorf("%s: serverError = %#v, want the *ServerError %q of the error", tc.name, serverError(tc.err), tc.text)
		}
		if n := testing.AllocsPerRun(100, func() { _ = serverError(tc.err) }); n > tc.most {
			t.Errorf("%s: serverError allocates %v times, want at most %v", tc.name, n, tc.most)
		}
	}
}
