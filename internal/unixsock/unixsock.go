// Package unixsock listens on unix socket paths so that a restarted process can listen again: a
// socket file left behind by an earlier process (one that was killed, or that crashed) is replaced,
// while a socket something still listens on, and a file that is not a socket, are left alone.
package unixsock

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"
)

// ErrInUse is the error for a socket file that something still listens on.
var ErrInUse = errors.New("socket in use")

// removeStale removes the socket file at path when nothing listens on it: a connection to it is
// refused. A missing path is no error. A socket that accepts the connection (or that is a live
// socket of another type) gives ErrInUse, and a file that is not a socket an error; both are left
// in place.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
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

// Listen listens for stream connections on the unix socket path, replacing a stale socket file
// there (one nothing listens on). Closing the listener removes the file.
func Listen(path string) (*net.UnixListener, error) {
	if err := removeStale(path); err != nil {
		return nil, &net.OpError{Op: "listen", Net: "unix", Addr: &net.UnixAddr{Name: path, Net: "unix"}, Err: err}
	}
	return net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
}

// PacketConn is a unixgram socket whose Close also removes its file (closing a *net.UnixConn
// leaves the file).
type PacketConn struct {
	*net.UnixConn
	path string
}

// Close closes the socket and removes its file.
func (c *PacketConn) Close() error {
	if err := c.UnixConn.Close(); err != nil {
		return err // closed before: the file may be another socket's by now
	}
	if err := os.Remove(c.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// ListenPacket listens for datagrams on the unixgram socket path, replacing a stale socket file
// there (one nothing listens on). Closing the PacketConn removes the file.
func ListenPacket(path string) (*PacketConn, error) {
	if err := removeStale(path); err != nil {
		return nil, &net.OpError{Op: "listen", Net: "unixgram", Addr: &net.UnixAddr{Name: path, Net: "unixgram"}, Err: err}
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	return &PacketConn{UnixConn: conn, path: path}, nil
}
