package faultproxy_test

import (
	"bufio"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/internal/faultproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer answers every line with the same line and counts the lines it got on got.
func echoServer(t *testing.T) (addr string, got <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			s, err := r.ReadString('\n')
			if err != nil {
				return
			}
			lines <- s
			if _, err := c.Write([]byte(s)); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String(), lines
}

func TestPauseRepliesAndPause(t *testing.T) {
	addr, got := echoServer(t)
	p := faultproxy.New(t, addr)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	echo := make(chan string, 4)
	go func() {
		for {
			s, err := r.ReadString('\n')
			if err != nil {
				close(echo)
				return
			}
			echo <- s
		}
	}()
	send := func(s string) {
		if _, err := c.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	within := func(ch <-chan string, want string) {
		t.Helper()
		select {
		case s := <-ch:
			if s != want {
				t.Fatalf("got %q, want %q", s, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%q did not arrive", want)
		}
	}
	held := func(ch <-chan string) {
		t.Helper()
		select {
		case s := <-ch:
			t.Fatalf("%q arrived while held", s)
		case <-time.After(200 * time.Millisecond):
		}
	}

	send("a\n")
	within(got, "a\n")
	within(echo, "a\n")

	p.PauseReplies() // the request reaches the server, its answer waits
	send("b\n")
	within(got, "b\n")
	held(echo)
	p.Resume()
	within(echo, "b\n")

	p.Pause() // nothing moves either way
	send("c\n")
	held(got)
	p.Resume()
	within(got, "c\n")
	within(echo, "c\n")

	p.CloseConns()
	if _, ok := <-echo; ok {
		t.Fatal("connection still open after CloseConns")
	}
}
