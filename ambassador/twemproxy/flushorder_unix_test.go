//go:build unix

package twemproxy

import (
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// orderLog records which socket each write of a round went to.
type orderLog struct {
	mu     sync.Mutex
	writes []string
}

func (l *orderLog) add(name string) {
	l.mu.Lock()
	l.writes = append(l.writes, name)
	l.mu.Unlock()
}

// loggedConn is a TCP connection whose raw writes are logged under name.
type loggedConn struct {
	*net.TCPConn
	name string
	log  *orderLog
}

func (c loggedConn) SyscallConn() (syscall.RawConn, error) {
	raw, err := c.TCPConn.SyscallConn()
	return loggedRaw{RawConn: raw, c: c}, err
}

type loggedRaw struct {
	syscall.RawConn
	c loggedConn
}

func (r loggedRaw) Write(f func(fd uintptr) bool) error {
	r.c.log.add(r.c.name)
	return r.RawConn.Write(f)
}

// A round's end writes the clients' replies before the requests to the servers: at -P1 a write
// to a redis-server that sleeps wakes it, and the scheduler then runs it on the proxy's CPU
// (perf sched_switch: 95% of the proxy's context switches were there), so replies written after
// that write waited for the server's turn on the CPU. The replies the server writes complete
// (noreply requests) or fail are still written in the same flush.
func TestRoundFlushWritesRepliesBeforeRequests(t *testing.T) {
	var log orderLog
	cl, clPeer := tcpPair(t)
	sv, svPeer := tcpPair(t)

	c := &client{conn: cl, kick: make(chan struct{}, 1), space: make(chan struct{}, 1), drained: make(chan struct{})}
	c.nb = rawIOFor(loggedConn{TCPConn: cl.(*net.TCPConn), name: "client", log: &log})
	c.out = append(c.out, "+OK\r\n"...)

	sc := &serverConn{wake: make(chan struct{}, 1)}
	sess := &session{sc: sc, conn: sv, done: make(chan struct{})}
	sess.nb = rawIOFor(loggedConn{TCPConn: sv.(*net.TCPConn), name: "server", log: &log})
	sc.sess = sess
	sc.out = append(sc.out, "*1\r\n$4\r\nPING\r\n"...)
	sc.owed = true

	// A noreply request in the server's batch: the server write completes it, which releases
	// the reply queued behind it in its client; that reply must be written in the same flush.
	c2, c2Peer := tcpPair(t)
	nr := &client{conn: c2, kick: make(chan struct{}, 1), space: make(chan struct{}, 1), drained: make(chan struct{})}
	nr.nb = rawIOFor(loggedConn{TCPConn: c2.(*net.TCPConn), name: "noreply client", log: &log})
	nr.p = &pool{}
	r := &Request{c: nr, NoReply: true}
	next := &Request{c: nr, Local: true, done: true}
	next.Resp = append(next.Resp, "noreply done\r\n"...)
	nr.queue = append(nr.queue, r, next)
	sc.noreply = append(sc.noreply, r)

	var ds dirtySet
	ds.add(c)
	scratch := routeScratch{ds: &ds, touched: []*serverConn{sc}}
	scratch.flush()

	if diff := cmp.Diff([]string{"client", "server", "noreply client"}, log.writes); diff != "" {
		t.Errorf("write order (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		peer net.Conn
		want string
	}{{clPeer, "+OK\r\n"}, {svPeer, "*1\r\n$4\r\nPING\r\n"}, {c2Peer, "noreply done\r\n"}} {
		_ = tc.peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, len(tc.want))
		if _, err := io.ReadFull(tc.peer, buf); err != nil || string(buf) != tc.want {
			t.Errorf("peer got %q, %v; want %q", buf, err, tc.want)
		}
	}
}
