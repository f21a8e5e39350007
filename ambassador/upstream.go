package ambassador

import (
	"bufio"
	"net"
	"sync"
)

// upConn is one upstream HTTP/1.1 connection with its buffers; it serves one request at a time.
type upConn struct {
	nc net.Conn
	br *bufio.Reader
	bw *bufio.Writer
	rs respState
	// body reads the request body writeRequest sends (here so that it is not allocated per
	// request).
	body bodyReader
}

func newUpConn(nc net.Conn) *upConn {
	return &upConn{nc: nc, br: bufio.NewReaderSize(nc, 8<<10), bw: bufio.NewWriterSize(nc, 8<<10)}
}

// idlePool is a Backend's stack of idle keep-alive connections (most recently used first, so the
// warmest connections are reused and the rest age out on the server side).
type idlePool struct {
	mu     sync.Mutex
	conns  []*upConn
	max    int
	closed bool
}

func (p *idlePool) get() *upConn {
	p.mu.Lock()
	n := len(p.conns)
	if n == 0 {
		p.mu.Unlock()
		return nil
	}
	c := p.conns[n-1]
	p.conns[n-1] = nil
	p.conns = p.conns[:n-1]
	p.mu.Unlock()
	return c
}

// put pools c, or closes it if the pool is closed or full, or c holds bytes past the answer it
// was last used for (they answer no request of ours).
func (p *idlePool) put(c *upConn) {
	if c.br.Buffered() > 0 {
		c.nc.Close()
		return
	}
	p.mu.Lock()
	if p.closed || len(p.conns) >= p.max {
		p.mu.Unlock()
		c.nc.Close()
		return
	}
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

// closeAll closes every idle connection; later puts close their connection.
func (p *idlePool) closeAll() {
	p.mu.Lock()
	conns := p.conns
	p.conns, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range conns {
		c.nc.Close()
	}
}

// drain closes every idle connection but keeps the pool usable.
func (p *idlePool) drain() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.nc.Close()
	}
}
