//go:build unix

package twemproxy

import (
	"io"
	"os"
	"syscall"

	"github.com/podblocks/podblocks/internal/rawsys"
)

const rawIOSupported = true

// rawIO reads or writes a socket through its raw connection, which keeps the descriptor from
// being closed and reused during the call, with the raw system calls of internal/rawsys. Its
// callbacks are bound once, so a call does not allocate a closure. Not safe for concurrent use:
// a socket read on one goroutine and written on another has a rawIO for each.
type rawIO struct {
	raw  syscall.RawConn
	b    []byte
	n    int
	err  error
	wait bool // a read waits for data (Read) instead of reporting EAGAIN (readNow)
	rfn  func(fd uintptr) bool
	wfn  func(fd uintptr) bool
}

func newRawIO(raw syscall.RawConn) *rawIO {
	w := &rawIO{raw: raw}
	w.rfn, w.wfn = w.read1, w.write1
	return w
}

// Write writes as much of b as the socket takes at once.
func (w *rawIO) Write(b []byte) (int, error) {
	w.b, w.n, w.err = b, 0, nil
	err := w.raw.Write(w.wfn)
	n := w.n
	if err == nil {
		err = w.err
	}
	w.b, w.err = nil, nil
	return n, err
}

func (w *rawIO) write1(fd uintptr) bool {
	for w.n < len(w.b) {
		m, e := rawsys.Write(int(fd), w.b[w.n:])
		w.n += m
		switch {
		case e == syscall.EINTR:
		case e == syscall.EAGAIN:
			return true
		case e != 0:
			w.err = os.NewSyscallError("write", e)
			return true
		case m == 0:
			w.err = io.ErrShortWrite
			return true
		}
	}
	return true
}

// readNow reads once into b without waiting: n > 0 bytes, 0 and nil at the end of the stream, or
// the error (syscall.EAGAIN: nothing to read).
func (w *rawIO) readNow(b []byte) (int, error) {
	w.wait = false
	return w.read(b)
}

// Read is io.Reader's Read: it waits (in Go's poller, so the connection's read deadline applies)
// until the socket has data, its stream ended (io.EOF) or it failed.
func (w *rawIO) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	w.wait = true
	n, err := w.read(b)
	switch {
	case err == nil && n == 0:
		return 0, io.EOF
	case err != nil && err != syscall.EAGAIN:
		err = readError(err)
	}
	return n, err
}

// readError is what Read returns for the error of a read: a system call's error as an
// *os.SyscallError, as net.Conn's reads report it.
func readError(err error) error {
	if errno, ok := err.(syscall.Errno); ok {
		return os.NewSyscallError("read", errno)
	}
	return err
}

func (w *rawIO) read(b []byte) (int, error) {
	w.b, w.n, w.err = b, 0, nil
	if err := w.raw.Read(w.rfn); err != nil {
		w.b = nil
		return 0, err
	}
	w.b = nil
	return w.n, w.err
}

func (w *rawIO) read1(fd uintptr) bool {
	for {
		n, e := rawsys.Read(int(fd), w.b)
		if e == syscall.EINTR {
			continue
		}
		if e == syscall.EAGAIN && w.wait {
			return false // Go's poller waits for the socket to be readable, then calls again
		}
		w.n, w.err = n, nil
		if e != 0 {
			w.err = e
		}
		return true
	}
}
