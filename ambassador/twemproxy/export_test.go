package twemproxy

import (
	"errors"
	"net"
)

// PolledClients returns how many of the clients of pool the poller reads (pollIdle or pollBusy)
// and how many clients the pool has.
func PolledClients(s *Server, pool string) (polled, total int) {
	p := runningPool(s, pool)
	if p == nil {
		return 0, 0
	}
	p.clientMu.Lock()
	defer p.clientMu.Unlock()
	for c := range p.clients {
		total++
		if c.polled() {
			polled++
		}
	}
	return polled, total
}

// PolledSessions returns how many of the server sessions of pool the poller reads (pollIdle or
// pollBusy) and how many sessions the pool has.
func PolledSessions(s *Server, pool string) (polled, total int) {
	p := runningPool(s, pool)
	if p == nil {
		return 0, 0
	}
	p.mu.RLock()
	st := p.st
	p.mu.RUnlock()
	for _, srv := range st.servers {
		for _, sc := range srv.conns {
			sc.mu.Lock()
			if s := sc.sess; s != nil {
				total++
				if s.polled() {
					polled++
				}
			}
			sc.mu.Unlock()
		}
	}
	return polled, total
}

// runningPool returns the running pool of that name, or nil.
func runningPool(s *Server, name string) *pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pr := s.running[name]; pr != nil {
		return pr.p
	}
	return nil
}

// ClientConns returns the connections of the clients of pool.
func ClientConns(s *Server, pool string) []net.Conn {
	p := runningPool(s, pool)
	if p == nil {
		return nil
	}
	p.clientMu.Lock()
	defer p.clientMu.Unlock()
	var conns []net.Conn
	for c := range p.clients {
		conns = append(conns, c.conn)
	}
	return conns
}

// MachineHosts returns this machine's addresses beyond loopback (see machineHosts).
var MachineHosts = machineHosts

// WithPortableClients makes s serve its client connections as on systems without raw system calls
// or the poller (off unix and off Linux): through net.Conn's Read, Write and CloseWrite only.
func WithPortableClients() Option {
	return optionFunc(func(o *options) {
		o.wrapConn = func(c net.Conn) net.Conn { return portableConn{c} }
	})
}

// portableConn hides its connection's SyscallConn.
type portableConn struct{ net.Conn }

func (c portableConn) CloseWrite() error {
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok {
		return errors.ErrUnsupported
	}
	return cw.CloseWrite()
}

// MaxPending is a client's bound on unanswered requests.
const MaxPending = maxPending

// unwritten returns the bytes of c's replies waiting to be written.
func (c *client) unwritten() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.out) + c.writing
}
