package twemproxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

var requestPool = sync.Pool{New: func() any { return &Request{done: make(chan struct{}, 1)} }}

const maxPooledBuf = 64 << 10

func getRequest() *Request { return requestPool.Get().(*Request) }

func putRequest(r *Request) {
	for _, f := range r.frags {
		putRequest(f)
	}
	if cap(r.Buf) > maxPooledBuf || cap(r.Resp) > maxPooledBuf {
		return
	}
	r.reset()
	requestPool.Put(r)
}

func (r *Request) complete() { r.done <- struct{}{} }

func (r *Request) fail(err error) {
	if err == nil {
		err = ErrClosed
	}
	r.err = err
	r.done <- struct{}{}
}

// wait blocks until r is complete, calling before() first if it would block.
func (r *Request) wait(before func()) {
	select {
	case <-r.done:
		return
	default:
	}
	before()
	<-r.done
}

// poolState is a pool's servers and distribution for one configuration generation.
type poolState struct {
	cfg     *PoolConfig
	proto   Protocol
	servers []*server

	placer      atomic.Pointer[Placer]
	nextRebuild atomic.Int64 // unix nanoseconds of the next ejected server's retry; 0: none
	nejected    atomic.Int32
	rebuildMu   sync.Mutex

	serverEjects *atomic.Int64 // the pool's counter (survives reloads)
	log          *zap.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newPoolState(cfg *PoolConfig, proto Protocol, ejects *atomic.Int64, log *zap.Logger) *poolState {
	st := &poolState{cfg: cfg, proto: proto, serverEjects: ejects, log: log}
	for i, sc := range cfg.Servers {
		s := &server{cfg: sc, idx: i}
		for range cfg.ServerConnections {
			s.conns = append(s.conns, newServerConn(s, st))
		}
		st.servers = append(st.servers, s)
	}
	st.placer.Store(NewPlacer(cfg, nil))
	return st
}

// start launches the server connections and health checks; they run until stop or parent ends.
func (st *poolState) start(parent context.Context) {
	st.ctx, st.cancel = context.WithCancel(parent)
	for _, s := range st.servers {
		for _, sc := range s.conns {
			st.wg.Add(1)
			go func() { defer st.wg.Done(); sc.run(st.ctx) }()
		}
		if st.cfg.HealthCheckInterval > 0 {
			st.wg.Add(1)
			go func() { defer st.wg.Done(); st.healthLoop(s) }()
		}
	}
}

// retire closes the server connections after their queued and in-flight requests are answered;
// after grace, whatever is left is cut off. It returns when everything has exited.
func (st *poolState) retire(grace time.Duration) {
	for _, s := range st.servers {
		for _, sc := range s.conns {
			sc.close()
		}
	}
	done := make(chan struct{})
	go func() { st.wg.Wait(); close(done) }()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	st.cancel()
	<-done
}

// route sends r (or its fragments) to the servers that own its keys.
func (st *poolState) route(r *Request, clientID uint64, scratch *routeScratch) {
	if !r.MultiKey || len(r.Keys) < 2 {
		var key []byte
		if len(r.Keys) > 0 {
			key = r.Key(0)
		}
		st.forward(r, key, clientID)
		return
	}
	// Place every key; if they all share a server, forward the request whole.
	r.KeyFrag = r.KeyFrag[:0]
	same := true
	for i := range r.Keys {
		idx, err := st.place(r.Key(i))
		if err != nil {
			idx = -1
		}
		r.KeyFrag = append(r.KeyFrag, idx)
		if idx != r.KeyFrag[0] {
			same = false
		}
	}
	if same {
		if r.KeyFrag[0] < 0 {
			_, err := st.place(r.Key(0))
			r.fail(err)
			return
		}
		st.send(r, st.servers[r.KeyFrag[0]], clientID)
		return
	}
	fragOf := scratch.fragOf(len(st.servers) + 1)
	for i, idx := range r.KeyFrag {
		slot := idx + 1 // slot 0: keys with no live server
		if fragOf[slot] < 0 {
			fragOf[slot] = len(r.frags)
			r.frags = append(r.frags, getRequest())
			scratch.servers = append(scratch.servers, idx)
		}
		r.KeyFrag[i] = fragOf[slot]
	}
	for f, frag := range r.frags {
		scratch.keys = scratch.keys[:0]
		for i, kf := range r.KeyFrag {
			if kf == f {
				scratch.keys = append(scratch.keys, i)
			}
		}
		st.proto.Fragment(r, scratch.keys, frag)
		idx := scratch.servers[f]
		if idx < 0 {
			_, err := st.place(frag.Key(0))
			if err == nil {
				err = ErrNoLiveServers
			}
			frag.fail(err)
			continue
		}
		st.send(frag, st.servers[idx], clientID)
	}
	scratch.servers = scratch.servers[:0]
}

type routeScratch struct {
	slots   []int
	keys    []int
	servers []int
}

func (s *routeScratch) fragOf(n int) []int {
	if cap(s.slots) < n {
		s.slots = make([]int, n)
	}
	s.slots = s.slots[:n]
	for i := range s.slots {
		s.slots[i] = -1
	}
	return s.slots
}

func (st *poolState) forward(r *Request, key []byte, clientID uint64) {
	idx, err := st.place(key)
	if err != nil {
		r.fail(err)
		return
	}
	st.send(r, st.servers[idx], clientID)
}

func (st *poolState) send(r *Request, s *server, clientID uint64) {
	r.server = s
	s.conns[clientID%uint64(len(s.conns))].enqueue(r)
}

// place returns the index of key's server.
func (st *poolState) place(key []byte) (int, error) {
	var now int64
	if nr := st.nextRebuild.Load(); nr != 0 {
		now = time.Now().UnixNano()
		if now >= nr {
			st.rebuild()
		}
	}
	idx := st.placer.Load().Place(key)
	if idx < 0 {
		return -1, ErrNoLiveServers
	}
	if st.cfg.NoReshard && st.nejected.Load() > 0 {
		if now == 0 {
			now = time.Now().UnixNano()
		}
		if st.servers[idx].nextRetry.Load() > now {
			return -1, ErrServerEjected
		}
	}
	return idx, nil
}

// rebuild recomputes the distribution from the servers that are not ejected, as nutcracker does
// when an ejected server's retry time passes.
func (st *poolState) rebuild() {
	st.rebuildMu.Lock()
	defer st.rebuildMu.Unlock()
	now := time.Now().UnixNano()
	live := make([]bool, len(st.servers))
	var next int64
	var nej int32
	for i, s := range st.servers {
		nr := s.nextRetry.Load()
		if nr != 0 && nr <= now {
			s.nextRetry.CompareAndSwap(nr, 0)
			nr = 0
		}
		live[i] = nr == 0
		if nr != 0 {
			nej++
			if next == 0 || nr < next {
				next = nr
			}
		}
	}
	st.nextRebuild.Store(next)
	st.nejected.Store(nej)
	if !st.cfg.NoReshard {
		st.placer.Store(NewPlacer(st.cfg, live))
	}
}

// failure records a failed exchange with s; with auto_eject_hosts, server_failure_limit
// consecutive failures eject s for server_retry_timeout.
func (st *poolState) failure(s *server) {
	if !st.cfg.AutoEjectHosts || st.ctx.Err() != nil {
		return
	}
	if n := s.failures.Add(1); int(n) < st.cfg.ServerFailureLimit {
		return
	}
	s.failures.Store(0)
	now := time.Now()
	s.nextRetry.Store(now.Add(st.cfg.ServerRetryTimeout).UnixNano())
	s.ejectedAt.Store(now.Unix())
	st.serverEjects.Add(1)
	st.log.Warn("server ejected", zap.String("pool", st.cfg.Name), zap.String("server", s.cfg.Name),
		zap.Duration("retry", st.cfg.ServerRetryTimeout))
	st.rebuild()
}

func (st *poolState) success(s *server) {
	if s.failures.Load() != 0 {
		s.failures.Store(0)
	}
}

// readmit puts an ejected server back at once (a health check saw it answer).
func (st *poolState) readmit(s *server) {
	if s.nextRetry.Load() == 0 {
		return
	}
	s.failures.Store(0)
	s.nextRetry.Store(0)
	st.log.Info("server readmitted", zap.String("pool", st.cfg.Name), zap.String("server", s.cfg.Name))
	st.rebuild()
}

func (st *poolState) healthLoop(s *server) {
	t := time.NewTicker(st.cfg.HealthCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-st.ctx.Done():
			return
		case <-t.C:
		}
		if err := st.probe(s); err != nil {
			if st.ctx.Err() != nil {
				return
			}
			st.log.Debug("health check failed", zap.String("server", s.cfg.Name), zap.Error(err))
			if s.nextRetry.Load() == 0 {
				st.failure(s)
			}
			continue
		}
		st.readmit(s)
	}
}

func (st *poolState) probe(s *server) error {
	timeout := st.cfg.HealthCheckInterval
	if st.cfg.Timeout > 0 && st.cfg.Timeout < timeout {
		timeout = st.cfg.Timeout
	}
	ctx, cancel := context.WithTimeout(st.ctx, timeout)
	defer cancel()
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, s.cfg.Network, s.cfg.Addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if send, n := st.proto.Handshake(st.cfg); len(send) > 0 {
		if err := handshake(conn, send, n); err != nil {
			return err
		}
	}
	if _, err := conn.Write(st.proto.Probe()); err != nil {
		return err
	}
	return st.proto.CheckProbe(bufio.NewReaderSize(conn, 512))
}

// pool serves one configured pool: its listener, its clients, and its current state.
type pool struct {
	name  string
	proto Protocol
	log   *zap.Logger
	opts  *options

	mu  sync.RWMutex
	st  *poolState
	cfg *PoolConfig

	ln       net.Listener
	total    *atomic.Int64 // the server's count of accepted connections
	clientMu sync.Mutex
	clients  map[*client]struct{}
	nextID   atomic.Uint64

	clientEOF, clientErr, clientConns, serverEjects, forwardError, fragments atomic.Int64

	wg sync.WaitGroup
}

func newPool(cfg *PoolConfig, proto Protocol, o *options, total *atomic.Int64) *pool {
	p := &pool{name: cfg.Name, proto: proto, opts: o, cfg: cfg, clients: map[*client]struct{}{}, total: total,
		log: o.log.With(zap.String("pool", cfg.Name))}
	p.st = newPoolState(cfg, proto, &p.serverEjects, p.log)
	return p
}

func (p *pool) listen() error {
	cfg := p.cfg
	lc := net.ListenConfig{}
	if cfg.ListenNetwork == "unix" {
		_ = os.Remove(cfg.ListenAddr)
	}
	ln, err := lc.Listen(context.Background(), cfg.ListenNetwork, cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("pool %s: listen: %w", cfg.Name, err)
	}
	if cfg.ListenNetwork == "unix" && cfg.ListenPerm != 0 {
		_ = os.Chmod(cfg.ListenAddr, cfg.ListenPerm)
	}
	p.ln = ln
	return nil
}

// start starts the pool's servers; it must be called before run, and before any swap.
func (p *pool) start(ctx context.Context) {
	p.mu.Lock()
	p.st.start(ctx)
	p.mu.Unlock()
}

// run serves the pool until ctx ends; p.ln must be open and start called.
func (p *pool) run(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { p.ln.Close() })
	defer stop()
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				break
			}
			p.log.Warn("accept", zap.Error(err))
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if max := p.currentCfg().ClientConnections; max > 0 && p.clientConns.Load() >= int64(max) {
			conn.Close()
			continue
		}
		c := &client{p: p, conn: conn, id: p.nextID.Add(1), pending: make(chan *Request, 512)}
		p.clientMu.Lock()
		p.clients[c] = struct{}{}
		p.clientMu.Unlock()
		p.clientConns.Add(1)
		p.total.Add(1)
		p.wg.Add(1)
		go func() { defer p.wg.Done(); c.serve() }()
	}
	p.ln.Close()
	p.clientMu.Lock()
	for c := range p.clients {
		c.conn.Close()
	}
	p.clientMu.Unlock()
	p.wg.Wait()
	p.mu.Lock()
	st := p.st
	p.mu.Unlock()
	st.cancel()
	st.wg.Wait()
}

func (p *pool) currentCfg() *PoolConfig {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.cfg
}

// swap makes cfg the pool's configuration, keeping the listener and the client connections;
// the old servers finish what they were sent and are closed.
func (p *pool) swap(ctx context.Context, cfg *PoolConfig) {
	st := newPoolState(cfg, p.proto, &p.serverEjects, p.log)
	st.start(ctx)
	p.mu.Lock()
	old := p.st
	p.st, p.cfg = st, cfg
	p.mu.Unlock()
	grace := 30 * time.Second
	if cfg.Timeout > 0 {
		grace = 2 * cfg.Timeout
	}
	old.retire(grace)
}

// client is one client connection.
type client struct {
	p       *pool
	conn    net.Conn
	id      uint64
	pending chan *Request
	authed  bool // used by the reader goroutine only
}

func (c *client) serve() {
	defer func() {
		c.p.clientMu.Lock()
		delete(c.p.clients, c)
		c.p.clientMu.Unlock()
		c.p.clientConns.Add(-1)
	}()
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); c.writeLoop() }()
	c.readLoop()
	close(c.pending)
	<-writerDone
	c.conn.Close()
}

const maxBatch = 64

func (c *client) readLoop() {
	p := c.p
	br := bufio.NewReaderSize(c.conn, ioBufSize)
	batch := make([]*Request, 0, maxBatch)
	var scratch routeScratch
	idle := p.opts.clientIdleTimeout
	var deadlineSet time.Time
	for {
		// Refresh the idle deadline only when a tenth of it has passed: a deadline update per read
		// costs more than the rest of a small request.
		if idle > 0 && br.Buffered() == 0 {
			if now := time.Now(); now.Sub(deadlineSet) > idle/10 {
				deadlineSet = now
				_ = c.conn.SetReadDeadline(now.Add(idle))
			}
		}
		r := getRequest()
		err := p.proto.ReadRequest(br, r)
		if err != nil {
			var ce *ClientError
			if errors.As(err, &ce) {
				r.reset()
				r.Local, r.Quit = true, true
				r.Resp = append(r.Resp, ce.Reply...)
				batch = append(batch, r)
				p.clientErr.Add(1)
			} else {
				putRequest(r)
				if errors.Is(err, io.EOF) {
					p.clientEOF.Add(1)
				} else {
					p.clientErr.Add(1)
				}
			}
			c.dispatch(batch, &scratch)
			return
		}
		batch = append(batch, r)
		if quit := r.Quit; quit || len(batch) == cap(batch) || !moreBuffered(br) {
			c.dispatch(batch, &scratch) // r may be released from here on
			batch = batch[:0]
			if quit {
				return
			}
		}
	}
}

// moreBuffered reports whether br holds at least the start of one more complete line, so
// dispatching can wait for the next request without delaying this batch behind a slow client.
func moreBuffered(br *bufio.Reader) bool {
	n := br.Buffered()
	if n == 0 {
		return false
	}
	b, _ := br.Peek(n)
	return bytes.IndexByte(b, '\n') >= 0
}

func (c *client) dispatch(batch []*Request, scratch *routeScratch) {
	if len(batch) == 0 {
		return
	}
	p := c.p
	p.mu.RLock()
	st := p.st
	for _, r := range batch {
		c.checkAuth(st.cfg, r)
		if !r.Local {
			st.route(r, c.id, scratch)
			if n := len(r.frags); n > 0 {
				p.fragments.Add(int64(n))
			}
		}
	}
	p.mu.RUnlock()
	for i, r := range batch {
		c.pending <- r
		batch[i] = nil
	}
}

// checkAuth answers password handshakes and, in a pool with redis_auth, every request of a
// client that has not authenticated yet.
func (c *client) checkAuth(cfg *PoolConfig, r *Request) {
	auth, ok := c.p.proto.(Authenticator)
	if !ok || (cfg.RedisAuth == "" && !r.Auth) {
		return
	}
	switch {
	case r.Auth && cfg.RedisAuth == "":
		r.Resp = auth.AuthReply(r.Resp[:0], AuthNotSet)
	case r.Auth && len(r.Keys) == 1 && subtle.ConstantTimeCompare(r.Key(0), []byte(cfg.RedisAuth)) == 1:
		c.authed = true
		r.Resp = auth.AuthReply(r.Resp[:0], AuthOK)
	case r.Auth:
		c.authed = false
		r.Resp = auth.AuthReply(r.Resp[:0], AuthInvalid)
	case c.authed || r.Quit:
		return
	default:
		r.Resp = auth.AuthReply(r.Resp[:0], AuthRequired)
	}
	r.Local = true
	r.MultiKey = false
}

func (c *client) writeLoop() {
	p := c.p
	bw := bufio.NewWriterSize(c.conn, ioBufSize)
	broken := false
	wt := p.opts.clientWriteTimeout
	var deadlineSet time.Time
	flush := func() {
		if broken || bw.Buffered() == 0 {
			return
		}
		if wt > 0 {
			if now := time.Now(); now.Sub(deadlineSet) > wt/10 { // at least 90% of wt is always left
				deadlineSet = now
				_ = c.conn.SetWriteDeadline(now.Add(wt))
			}
		}
		if err := bw.Flush(); err != nil {
			broken = true
			c.conn.Close()
		}
	}
	for r := range c.pending {
		if !r.Local {
			if len(r.frags) == 0 {
				r.wait(flush)
			}
			for _, f := range r.frags { // a split request itself is never sent
				f.wait(flush)
			}
			switch {
			case len(r.frags) > 0:
				r.Resp = r.Resp[:0]
				p.proto.Merge(r, r.frags)
			case r.err != nil:
				p.forwardError.Add(1)
				r.Resp = p.proto.ErrorReply(r.Resp[:0], r.err)
			}
		}
		if !broken {
			if _, err := bw.Write(r.Resp); err != nil {
				broken = true
				c.conn.Close()
			}
		}
		quit := r.Quit
		putRequest(r)
		if quit {
			flush()
			broken = true
			c.conn.Close()
		}
		if len(c.pending) == 0 {
			flush()
		}
	}
	flush()
}
