//go:build unix

package twemproxy

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// The server connections' reader reads through rawIO.Read: it must wait for data as net.Conn's
// Read does, end with io.EOF, and report a read deadline as a timeout, which the reader turns
// into the pool's timeout error.
func TestRawIORead(t *testing.T) {
	a, b := tcpPair(t)
	rd := rawIOFor(a)
	if rd == nil {
		t.Fatal("no raw I/O on a TCP connection")
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, _ = b.Write([]byte("hello"))
	}()
	buf := make([]byte, 16)
	n, err := rd.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read = %q, %v; want hello", buf[:n], err)
	}
	if n, err := rd.readNow(buf); n != 0 || err != syscall.EAGAIN {
		t.Fatalf("readNow on an empty socket = %d, %v; want EAGAIN", n, err)
	}
	_ = a.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	start := time.Now()
	_, err = rd.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past the deadline = %v; want a timeout", err)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("Read returned after %v, before its deadline", d)
	}
	_ = a.SetReadDeadline(time.Time{})
	_, _ = b.Write([]byte("x"))
	b.Close()
	var got []byte
	for {
		n, err := rd.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Read = %v; want the data, then io.EOF", err)
		}
	}
	if string(got) != "x" {
		t.Fatalf("read %q before EOF; want x", got)
	}
	a.Close()
	if _, err := rd.Read(buf); err == nil || err == io.EOF {
		t.Fatalf("Read on a closed connection = %v; want an error", err)
	}
}

// Write takes what the socket takes at once and never waits.
func TestRawIOWriteDoesNotWait(t *testing.T) {
	a, _ := tcpPair(t)
	w := rawIOFor(a)
	big := make([]byte, 64<<20) // far more than loopback's socket buffers hold
	done := make(chan struct{})
	var n int
	var err error
	go func() {
		defer close(done)
		n, err = w.Write(big)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Write waited for a peer that does not read")
	}
	if err != nil || n <= 0 || n >= len(big) {
		t.Fatalf("Write = %d, %v; want part of %d bytes", n, err, len(big))
	}
}
