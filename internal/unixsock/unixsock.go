// Package unixsock listens on unix socket paths so that a restarted process can listen again: a
// socket file left behind by an earlier process (one that was killed, or that crashed) is replaced,
// while a socket something still listens on, a file that is not a socket and a symbolic link are
// left alone.
//
// Two processes (or goroutines) starting on one stale path at once do not both succeed: the
// check, the removal of the stale file and the bind hold an flock on PATH.lock, a file created
// next to the socket and left there (removing it would let a third starter lock a new file while
// the second holds the old one). Where flock is not available (windows, solaris and other
// systems without it) there is no such lock. Closing removes the socket file only while it is
// still the one this listener bound, so a listener that lost its path to another one's bind
// does not remove the other's socket.
package unixsock

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// ErrInUse is the error for a socket file that something still listens on.
var ErrInUse = errors.New("socket in use")

// removeStale removes the socket file at path when nothing listens on it: a connection to it is
// refused. A missing path is no error. A socket that accepts the connection (or that is a live
// socket of another type) gives ErrInUse, and a symbolic link or a file that is not a socket an
// error; all are left in place.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return errors.New("file exists and is a symbolic link: not following or replacing it")
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return errors.New("file exists and is not a socket: not replacing it")
	}
	// A socket file nobody is bound to refuses any connection; a live socket of another type
	// fails with EPROTOTYPE instead, and one of this type accepts.
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return ErrInUse
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w (%w)", ErrInUse, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}

// socketFile is the socket file a listener bound, which its Close removes while it is still that
// file.
type socketFile struct {
	path  string
	bound os.FileInfo // Lstat right after the bind, under the lock
	once  sync.Once
	err   error
}

// bind replaces a stale socket file at path and binds, holding path's lock throughout.
func bind(network, path string, listen func(*net.UnixAddr) (interface{ Close() error }, error)) (*socketFile, error) {
	unlock, err := lock(path)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: &net.UnixAddr{Name: path, Net: network}, Err: err}
	}
	defer unlock()
	if err := removeStale(path); err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: &net.UnixAddr{Name: path, Net: network}, Err: err}
	}
	c, err := listen(&net.UnixAddr{Name: path, Net: network})
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("unixsock: stat the bound socket: %w", err)
	}
	return &socketFile{path: path, bound: fi}, nil
}

// close closes c and removes the socket file if it is still the one bound; later calls return the
// first's error.
func (f *socketFile) close(c interface{ Close() error }) error {
	f.once.Do(func() {
		unlock, lerr := lock(f.path)
		if lerr == nil {
			defer unlock()
		}
		// Removed before the socket closes, under the lock: no other listener can bind the path
		// between the check and the removal.
		if fi, err := os.Lstat(f.path); err == nil && os.SameFile(fi, f.bound) {
			if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				f.err = err
			}
		}
		f.err = errors.Join(c.Close(), f.err)
	})
	return f.err
}

// Listener is a unix stream listener whose Close removes its socket file while it is still the
// one it bound.
type Listener struct {
	*net.UnixListener
	file *socketFile
}

// Close closes the listener and removes its socket file (see Listener).
func (l *Listener) Close() error { return l.file.close(l.UnixListener) }

// Listen listens for stream connections on the unix socket path, replacing a stale socket file
// there (one nothing listens on). Closing the listener removes the file.
func Listen(path string) (*Listener, error) {
	var ln *net.UnixListener
	f, err := bind("unix", path, func(a *net.UnixAddr) (interface{ Close() error }, error) {
		l, err := net.ListenUnix("unix", a)
		if err != nil {
			return nil, err
		}
		l.SetUnlinkOnClose(false) // Close removes the file only if it is still this socket's
		ln = l
		return l, nil
	})
	if err != nil {
		return nil, err
	}
	return &Listener{UnixListener: ln, file: f}, nil
}

// PacketConn is a unixgram socket whose Close also removes its file (closing a *net.UnixConn
// leaves the file) while it is still the one it bound.
type PacketConn struct {
	*net.UnixConn
	file *socketFile
}

// Close closes the socket and removes its file (see PacketConn).
func (c *PacketConn) Close() error { return c.file.close(c.UnixConn) }

// ListenPacket listens for datagrams on the unixgram socket path, replacing a stale socket file
// there (one nothing listens on). Closing the PacketConn removes the file.
func ListenPacket(path string) (*PacketConn, error) {
	var conn *net.UnixConn
	f, err := bind("unixgram", path, func(a *net.UnixAddr) (interface{ Close() error }, error) {
		c, err := net.ListenUnixgram("unixgram", a)
		if err != nil {
			return nil, err
		}
		conn = c
		return c, nil
	})
	if err != nil {
		return nil, err
	}
	return &PacketConn{UnixConn: conn, file: f}, nil
}
