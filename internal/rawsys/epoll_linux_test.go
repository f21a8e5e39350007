package rawsys_test

import (
	"syscall"
	"testing"

	"github.com/podblocks/podblocks/internal/rawsys"
)

func TestEpoll(t *testing.T) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(epfd)
	var p [2]int
	if err := syscall.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(p[0])
	defer syscall.Close(p[1])
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p[0], &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p[0])}); err != nil {
		t.Fatal(err)
	}
	events := make([]syscall.EpollEvent, 4)
	if n, e := rawsys.EpollPoll(epfd, events); n != 0 || e != 0 {
		t.Fatalf("poll with nothing ready: %d, %v", n, e)
	}
	if n, e := rawsys.EpollWait(epfd, events, 1); n != 0 || e != 0 {
		t.Fatalf("1 ms wait with nothing ready: %d, %v", n, e)
	}
	if _, e := rawsys.Write(p[1], []byte("x")); e != 0 {
		t.Fatal(e)
	}
	for _, wait := range []func() (int, syscall.Errno){
		func() (int, syscall.Errno) { return rawsys.EpollPoll(epfd, events) },
		func() (int, syscall.Errno) { return rawsys.EpollWait(epfd, events, -1) },
	} {
		n, e := wait()
		if n != 1 || e != 0 || events[0].Fd != int32(p[0]) || events[0].Events&syscall.EPOLLIN == 0 {
			t.Fatalf("with the pipe readable: %d, %v, %+v", n, e, events[0])
		}
	}
}
