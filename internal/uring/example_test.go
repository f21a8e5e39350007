//go:build unix

package uring_test

import (
	"fmt"
	"syscall"

	"github.com/podblocks/podblocks/internal/uring"
)

// ExampleBatch sends a pass's messages, each on its own socket, in one io_uring_enter. Where
// io_uring is missing or refused (or on a system other than Linux), New fails, the ring is nil,
// and every send is left not done: the example makes it with one system call, so the output is
// the same either way.
func ExampleBatch() {
	var send, recv []int
	for range 3 {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer syscall.Close(fds[0])
		defer syscall.Close(fds[1])
		send, recv = append(send, fds[0]), append(recv, fds[1])
	}

	ring, err := uring.New(8) // nil and an error where io_uring is missing or refused
	if err == nil {
		defer ring.Close() // Close is idempotent: this is harmless after the Close below
	}

	msgs := []string{"alpha", "beta", "gamma"}
	var b uring.Batch[int] // the item is the message's index
	for i, m := range msgs {
		b.Add(i, send[i], []byte(m))
	}
	_, errno := b.Send(ring, func(i int, res uring.Result, known bool) {
		n, err := res.Outcome(known)
		switch {
		case err != 0: // EIO: the outcome is unknown
			fmt.Printf("send %d: %v\n", i, err)
		case n < len(msgs[i]): // what the ring did not send: one system call
			if _, err := syscall.Write(send[i], []byte(msgs[i][n:])); err != nil {
				fmt.Printf("send %d: %v\n", i, err)
			}
		}
	})
	if errno != 0 { // the ring failed: close it, and send with one system call from now on
		ring.Close()
		ring = nil
	}

	buf := make([]byte, 16)
	for i, fd := range recv {
		n, err := syscall.Read(fd, buf)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("socket %d: %s\n", i, buf[:n])
	}
	// Output:
	// socket 0: alpha
	// socket 1: beta
	// socket 2: gamma
}
