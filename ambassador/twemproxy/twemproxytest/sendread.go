package twemproxytest

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// SendAndRead writes in on a new connection to addr while it reads, as a client that pipelines
// requests does, and returns what it read up to the end of the stream, with the write's error and
// the read's: rerr is nil when the stream ended cleanly (the peer shut its side), and otherwise
// the failure that ended the read: a reset ("connection reset by peer"), or the 30 s deadline.
// A peer that closes the connection with bytes of in unread sends a reset, which can also
// discard what it wrote before: out then lacks replies the peer sent.
func SendAndRead(tb testing.TB, addr string, in []byte) (out []byte, werr, rerr error) {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(in)
		done <- err
	}()
	out, rerr = io.ReadAll(c)
	if errors.Is(rerr, io.EOF) {
		rerr = nil
	}
	if rerr != nil {
		c.Close() // the write may wait for a peer that reads no more
	}
	return out, <-done, rerr
}
