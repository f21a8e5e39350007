//go:build unix

package twemproxy

import (
	"io"
	"os"
	"syscall"
)

const rawIOSupported = true

// nbWriter writes to a socket without blocking. Its callback is bound once, so a write does not
// allocate a closure. Not safe for concurrent use.
type nbWriter struct {
	raw syscall.RawConn
	b   []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

func newNBWriter(raw syscall.RawConn) *nbWriter {
	w := &nbWriter{raw: raw}
	w.fn = w.write
	return w
}

// Write writes as much of b as the socket takes at once.
func (w *nbWriter) Write(b []byte) (int, error) {
	w.b, w.n, w.err = b, 0, nil
	err := w.raw.Write(w.fn)
	n := w.n
	if err == nil {
		err = w.err
	}
	w.b, w.err = nil, nil
	return n, err
}

func (w *nbWriter) write(fd uintptr) bool {
	for w.n < len(w.b) {
		m, err := syscall.Write(int(fd), w.b[w.n:])
		if m > 0 {
			w.n += m
		}
		switch {
		case err == syscall.EINTR:
		case err == syscall.EAGAIN:
			return true
		case err != nil:
			w.err = os.NewSyscallError("write", err)
			return true
		case m == 0:
			w.err = io.ErrShortWrite
			return true
		}
	}
	return true
}
