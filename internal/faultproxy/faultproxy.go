// Package faultproxy is a TCP proxy on loopback for fault tests: it holds traffic (both ways, or
// only what the server sends) and cuts connections, so that tests can stall or break a client's
// link to a real server.
package faultproxy

import (
	"net"
	"sync"
	"testing"
)

// Proxy is a TCP proxy on loopback in front of one address, for fault injection: Pause holds every
// byte in both directions (a process that stops talking, or a network that stops delivering) and
// PauseReplies only what the target sends (the client's requests still arrive, their answers are
// lost for now) until Resume delivers them late; CloseConns cuts every connection abruptly.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	gate   chan struct{} // nil while flowing; closed by Resume
	oneWay bool          // the gate holds only what the target sends
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// New starts a proxy to target (host:port) and closes it when the test ends.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("faultproxy: listen: %v", err)
	}
	p := &Proxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			u.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.conns[u] = struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(c, u, true)
		go p.pipe(u, c, false)
	}
}

// pipe copies src to dst, holding data while paused (fromTarget: src is the target's side), and
// closes both ends when either fails.
func (p *Proxy) pipe(dst, src net.Conn, fromTarget bool) {
	defer p.wg.Done()
	defer func() {
		src.Close()
		dst.Close()
		p.mu.Lock()
		delete(p.conns, src)
		delete(p.conns, dst)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			gate, oneWay, closed := p.gate, p.oneWay, p.closed
			p.mu.Unlock()
			if closed {
				return
			}
			if gate != nil && (fromTarget || !oneWay) {
				<-gate
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // io.EOF or a closed connection: both ends close
		}
	}
}

// Pause holds all traffic until Resume.
func (p *Proxy) Pause() { p.hold(false) }

// PauseReplies holds what the target sends until Resume; what clients send still goes through.
func (p *Proxy) PauseReplies() { p.hold(true) }

func (p *Proxy) hold(oneWay bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate == nil && !p.closed {
		p.gate = make(chan struct{})
	}
	p.oneWay = oneWay
}

// Resume delivers what was held and lets traffic flow again.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate != nil {
		close(p.gate)
		p.gate = nil
	}
}

// CloseConns closes every proxied connection at once; new connections are still accepted.
func (p *Proxy) CloseConns() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// Close stops the proxy, closes every connection and waits for its goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.ln.Close()
		for c := range p.conns {
			c.Close()
		}
		if p.gate != nil {
			close(p.gate)
			p.gate = nil
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}
