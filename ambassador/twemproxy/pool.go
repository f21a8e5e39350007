package twemproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

var requestPool = sync.Pool{New: func() any { return new(Request) }}

const maxPooledBuf = 64 << 10

func getRequest() *Request { return requestPool.Get().(*Request) }

func putRequest(r *Request) { (*reqCache)(nil).put(r) }

// reqCache is one goroutine's stash of released requests (the pool's poller's): taking a request
// from it and putting one back costs no atomic operation, where sync.Pool's Get and Put cost about
// 6% of the poller's time at -P16. Only requests with small buffers are kept, and at most
// reqCacheMax of them; the rest go to the sync.Pool. A nil *reqCache uses the sync.Pool only.
type reqCache struct{ free []*Request }

const (
	reqCacheMax   = 1024
	reqCacheBytes = 4 << 10 // the largest Buf or Resp capacity a cached request keeps
)

// get returns a released request, or a new one.
func (rc *reqCache) get() *Request {
	if rc != nil {
		if n := len(rc.free); n > 0 {
			r := rc.free[n-1]
			rc.free[n-1] = nil
			rc.free = rc.free[:n-1]
			return r
		}
	}
	return getRequest()
}

// put releases r and its fragments.
func (rc *reqCache) put(r *Request) {
	for _, f := range r.frags {
		rc.put(f)
	}
	if cap(r.Buf) > maxPooledBuf || cap(r.Resp) > maxPooledBuf {
		return
	}
	r.reset()
	if rc == nil || len(rc.free) >= reqCacheMax || cap(r.Buf) > reqCacheBytes || cap(r.Resp) > reqCacheBytes {
		requestPool.Put(r)
		return
	}
	rc.free = append(rc.free, r)
}

// finish completes r with err (nil: its reply is in r.Resp). The client's ready replies are
// moved to its output buffer, to be written by ds.flush (at once if ds is nil). r may be
// released from here on: the caller must not touch it again.
func (r *Request) finish(err error, ds *dirtySet) {
	c := r.c
	c.mu.Lock()
	if !r.finishLocked(err) {
		c.mu.Unlock()
		return
	}
	var rc *reqCache
	if ds != nil {
		rc = ds.rc
	}
	c.drainLocked(rc)
	if ds == nil {
		c.writeLocked()
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	ds.add(c)
}

// finishEach completes each request of rs with err, as finish does, and clears rs. err is made
// the requests' *ServerError once for all of them, not once a request, so that a failure that
// fails many requests (a dial that fails, a connection that dies with requests in flight) does
// not allocate for each.
func finishEach(rs []*Request, err error, ds *dirtySet) {
	err = serverError(err)
	for i, r := range rs {
		r.finish(err, ds)
		rs[i] = nil
	}
}

// finishLocked completes r with err under its client's mu; it reports whether r's client request
// (r, or the split request r is a fragment of) is now complete.
func (r *Request) finishLocked(err error) bool {
	c := r.c
	if err != nil {
		r.err = serverError(err)
	}
	r.done = true
	// Count the reply toward the client's limit on replies not taken until it is drained.
	root := r
	if r.parent != nil {
		root = r.parent
	}
	root.readyBytes += len(r.Resp)
	c.ready += len(r.Resp)
	if p := r.parent; p != nil {
		if p.left--; p.left > 0 {
			return false
		}
		p.done = true
	}
	return true
}

// finishAll completes the requests of rs, which got their replies, into ds, as finish does each;
// the requests of one client next to each other in rs take its mu once. rs is cleared.
func finishAll(rs []*Request, ds *dirtySet) {
	for i := 0; i < len(rs); {
		c := rs[i].c
		c.mu.Lock()
		complete := false
		for ; i < len(rs) && rs[i].c == c; i++ {
			if rs[i].finishLocked(nil) {
				complete = true
			}
			rs[i] = nil
		}
		if complete {
			c.drainLocked(ds.rc)
		}
		c.mu.Unlock()
		if complete {
			ds.add(c)
		}
	}
}

// dirtySet collects the clients with replies to write, so that each gets one write per batch.
// rc, if not nil, is the goroutine's stash the requests drained into the clients' output go to.
type dirtySet struct {
	clients []*client
	rc      *reqCache
}

func (ds *dirtySet) add(c *client) {
	if n := len(ds.clients); n > 0 && ds.clients[n-1] == c {
		return
	}
	ds.clients = append(ds.clients, c)
}

func (ds *dirtySet) flush() {
	for i, c := range ds.clients {
		c.mu.Lock()
		c.writeLocked()
		c.mu.Unlock()
		ds.clients[i] = nil
	}
	ds.clients = ds.clients[:0]
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

	poller       *clientPoller // the pool's, which reads the server sessions' replies too; nil: their goroutines do
	p            *pool         // the pool, whose current state a failure ejects from (see failure)
	serverEjects *atomic.Int64 // the pool's counter (survives reloads)
	conns        *connCounts   // the server's count of connections
	log          *zap.Logger

	ctx          context.Context
	cancel       context.CancelFunc
	healthCancel context.CancelFunc // ends the health checks: retire ends them at once
	wg           sync.WaitGroup
}

func newPoolState(p *pool, cfg *PoolConfig) *poolState {
	st := &poolState{cfg: cfg, proto: p.proto, p: p, serverEjects: &p.serverEjects, conns: p.conns, log: p.log}
	for i, sc := range cfg.Servers {
		s := &server{cfg: sc, idx: i, serverCore: new(serverCore)}
		for range cfg.ServerConnections {
			s.conns = append(s.conns, newServerConn(s, st))
		}
		s.serverCore.conns = slices.Clone(s.conns)
		st.servers = append(st.servers, s)
	}
	st.placer.Store(NewPlacer(cfg, nil))
	return st
}

// start launches the server connections and health checks; they run until stop or parent ends.
// A server moved by a reload (see carry) takes the counters of the one it succeeds as its base
// first: start is called with the pool's mu held, where st is published (publish, pool.start),
// and the stats read a state's counters with it held too (see pool.snapshot), so a read of the old
// server's counters comes before the base is taken and a read of the new one's after: neither
// goes back.
func (st *poolState) start(parent context.Context) {
	for _, s := range st.servers {
		if s.movedFrom != nil {
			s.base = s.movedFrom.totals()
			s.movedFrom = nil
		}
	}
	st.ctx, st.cancel = context.WithCancel(parent)
	var health context.Context
	health, st.healthCancel = context.WithCancel(st.ctx)
	for _, s := range st.servers {
		for _, sc := range s.conns {
			st.wg.Add(1)
			go func() { defer st.wg.Done(); sc.run(st.ctx) }()
		}
		if st.cfg.HealthCheckInterval > 0 {
			st.wg.Add(1)
			go func() { defer st.wg.Done(); st.healthLoop(health, s) }()
		}
	}
}

// retire closes the server connections after their queued and in-flight requests are answered;
// after grace, whatever is left is cut off. Its health checks end at once: the new state's health
// checks take over. It returns when everything has exited, with the connections' counters moved to the
// servers' totals (see ended).
func (st *poolState) retire(grace time.Duration) {
	st.healthCancel()
	defer st.ended()
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
// It returns the number of fragments r was split into (0: sent whole). r may be complete and
// released before route returns, except for the fragments' count.
func (st *poolState) route(r *Request, scratch *routeScratch) int {
	// Under random distribution a key has no server: placing each key of a multi-key request on
	// its own would split MGET for nothing and refuse every command that needs its keys together
	// (nutcracker runs them), so the request goes whole to one server, as a single key would.
	if !r.MultiKey || len(r.Keys) < 2 || st.cfg.Distribution == Random {
		var key []byte
		if len(r.Keys) > 0 {
			key = r.Key(0)
		}
		st.forward(r, key, scratch)
		return 0
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
			r.finish(err, scratch.ds)
			return 0
		}
		st.send(r, st.servers[r.KeyFrag[0]], scratch)
		return 0
	}
	fragOf := scratch.fragOf(len(st.servers) + 1)
	for i, idx := range r.KeyFrag {
		slot := idx + 1 // slot 0: keys with no live server
		if fragOf[slot] < 0 {
			fragOf[slot] = len(r.frags)
			r.frags = append(r.frags, scratch.ds.rc.get())
			scratch.servers = append(scratch.servers, idx)
		}
		r.KeyFrag[i] = fragOf[slot]
	}
	nfrags := len(r.frags)
	r.left = nfrags // before any fragment can finish
	for f, frag := range r.frags {
		scratch.keys = scratch.keys[:0]
		for i, kf := range r.KeyFrag {
			if kf == f {
				scratch.keys = append(scratch.keys, i)
			}
		}
		st.proto.Fragment(r, scratch.keys, frag)
		frag.c, frag.parent = r.c, r
		idx := scratch.servers[f]
		if idx < 0 {
			_, err := st.place(frag.Key(0))
			if err == nil {
				err = ErrNoLiveServers
			}
			frag.finish(err, scratch.ds)
			continue
		}
		st.send(frag, st.servers[idx], scratch)
	}
	scratch.servers = scratch.servers[:0]
	return nfrags
}

// routeScratch is a client reader's state while it routes a batch of requests.
type routeScratch struct {
	slots   []int
	keys    []int
	servers []int

	clientID uint64
	now      time.Time     // the batch's time, the requests' sent time
	ds       *dirtySet     // clients with replies to write
	touched  []*serverConn // connections with bytes to flush
	full     []*serverConn // connections whose output buffer is full: wait for room after the batch
	pend     []pendConn    // requests sent and not enqueued yet, by server connection
}

// pendConn is the requests of a batch for one server connection, in order.
type pendConn struct {
	sc *serverConn
	rs []*Request
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

func (st *poolState) forward(r *Request, key []byte, scratch *routeScratch) {
	idx, err := st.place(key)
	if err != nil {
		r.finish(err, scratch.ds)
		return
	}
	st.send(r, st.servers[idx], scratch)
}

// send queues r for server s's connection in scratch; enqueue hands it over.
func (st *poolState) send(r *Request, s *server, scratch *routeScratch) {
	r.server = s
	sc := s.conns[scratch.clientID%uint64(len(s.conns))]
	for i := range scratch.pend {
		if p := &scratch.pend[i]; p.sc == sc {
			p.rs = append(p.rs, r)
			return
		}
	}
	if n := len(scratch.pend); n < cap(scratch.pend) {
		scratch.pend = scratch.pend[:n+1]
		p := &scratch.pend[n]
		p.sc, p.rs = sc, append(p.rs[:0], r)
		return
	}
	scratch.pend = append(scratch.pend, pendConn{sc: sc, rs: []*Request{r}})
}

// enqueue hands the requests send queued to their server connections, each connection's in one
// call (one lock instead of one per request), in the order they were sent, and notes the
// connections to flush and to wait for room on.
func (s *routeScratch) enqueue() {
	for i := range s.pend {
		p := &s.pend[i]
		owe, full := p.sc.enqueue(p.rs, s.now, s.ds)
		if owe {
			s.touched = addConn(s.touched, p.sc)
		}
		if full {
			s.full = addConn(s.full, p.sc)
		}
		clear(p.rs)
		p.rs, p.sc = p.rs[:0], nil
	}
	s.pend = s.pend[:0]
}

// flush writes the replies in ds, then the server connections touched, then the replies their
// writes completed or failed. Replies go first: a write to a server that sleeps wakes it, and the
// scheduler often runs it at once on the writer's CPU (at -P1 nearly all of the poller's context
// switches were there), which held up the replies written after it.
func (s *routeScratch) flush() {
	s.ds.flush()
	for i, sc := range s.touched {
		sc.flush(s.ds)
		s.touched[i] = nil
	}
	s.touched = s.touched[:0]
	s.ds.flush()
}

// addConn adds sc to set unless it is there.
func addConn(set []*serverConn, sc *serverConn) []*serverConn {
	for _, t := range set {
		if t == sc {
			return set
		}
	}
	return append(set, sc)
}

// ended moves the counters of st's connections, which have all exited, to their servers' totals,
// which the servers of the pool's other states share (see carry).
func (st *poolState) ended() {
	for _, s := range st.servers {
		s.retire(s.conns)
	}
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
// consecutive failures eject s for server_retry_timeout. It counts in the pool's current state, by
// its configuration, also when st is a state a reload replaced that still drains: s is then the
// current state's server of the same identity (they share their serverCore), or one the pool no
// longer has, whose failure ejects nothing.
func (st *poolState) failure(s *server) {
	if cfg := st.counts(s); cfg != nil {
		st.eject(s, cfg)
	}
}

// counts counts a failure of s and returns the configuration by which it ejects s now, or nil.
func (st *poolState) counts(s *server) *PoolConfig {
	if st.ctx.Err() != nil {
		return nil
	}
	cur := st.current()
	if cur != st && !cur.has(s.serverCore) {
		return nil
	}
	cfg := cur.cfg
	if !cfg.AutoEjectHosts {
		return nil
	}
	if n := s.failures.Add(1); int(n) < cfg.ServerFailureLimit {
		return nil
	}
	s.failures.Store(0)
	return cfg
}

// eject ejects s for cfg's server_retry_timeout.
func (st *poolState) eject(s *server, cfg *PoolConfig) {
	now := time.Now()
	s.nextRetry.Store(now.Add(cfg.ServerRetryTimeout).UnixNano())
	s.ejectedAt.Store(now.UnixMicro())
	st.serverEjects.Add(1)
	st.log.Warn("server ejected", zap.String("server", s.cfg.Name),
		zap.Duration("retry", cfg.ServerRetryTimeout))
	// The pool's state current now: a reload may have published a new state since counts looked,
	// whose carry ran before the ejection was recorded (see publish).
	st.current().rebuild()
}

// ejected reports whether s is ejected now.
func (s *server) ejected() bool {
	nr := s.nextRetry.Load()
	return nr != 0 && nr > time.Now().UnixNano()
}

// current returns the pool's current state: st, or the state a reload replaced it with.
func (st *poolState) current() *poolState {
	if st.p == nil {
		return st
	}
	return st.p.state()
}

// has reports whether one of st's servers is c's.
func (st *poolState) has(c *serverCore) bool {
	for _, s := range st.servers {
		if s.serverCore == c {
			return true
		}
	}
	return false
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
	st.log.Info("server readmitted", zap.String("server", s.cfg.Name))
	st.rebuild()
}

// healthLoop checks s every health_check_interval until ctx ends.
func (st *poolState) healthLoop(ctx context.Context, s *server) {
	t := time.NewTicker(st.cfg.HealthCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := st.probe(ctx, s); err != nil {
			if ctx.Err() != nil {
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

func (st *poolState) probe(ctx context.Context, s *server) error {
	timeout := st.cfg.HealthCheckInterval
	if st.cfg.Timeout > 0 && st.cfg.Timeout < timeout {
		timeout = st.cfg.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
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

	mu       sync.RWMutex
	st       *poolState
	cfg      *PoolConfig
	stopping bool           // run is returning: swap starts no more states
	retiring sync.WaitGroup // the states swap replaced, until they are closed; Add under mu

	ln       net.Listener
	sock     os.FileInfo // the unix socket file ln bound, at sockPath; nil for TCP
	sockPath string
	lnClose  sync.Once
	conns    *connCounts // the server's count of connections
	clientMu sync.Mutex
	clients  map[*client]struct{}
	nextID   atomic.Uint64
	poller   *clientPoller // reads the clients' requests; nil: their goroutines do

	clientEOF, clientErr, clientConns, serverEjects, forwardError, fragments atomic.Int64

	clientRejected atomic.Int64 // connections closed at once: client_connections were open
	rejectWarns    logLimit
	linger         lingerSlots // clients lingering after their stream ended (see client.serve)

	wg sync.WaitGroup
}

// lingerSlots counts the clients that linger after their stream ended (see lingerBytes). They no
// longer count as client connections, so that one lingering refuses no new client under
// client_connections, as under nutcracker, which closes such a connection at once; but no more
// than client_connections of them linger at once, so that a pool with the limit holds at most
// twice as many client sockets: a client past them is closed at once (and may get a reset).
type lingerSlots struct{ n atomic.Int64 }

// start takes a place to linger in, of at most max (0: any number); it reports whether there was one.
func (l *lingerSlots) start(max int) bool {
	if n := l.n.Add(1); max > 0 && n > int64(max) {
		l.n.Add(-1)
		return false
	}
	return true
}

// done gives back the place start took.
func (l *lingerSlots) done() { l.n.Add(-1) }

func newPool(cfg *PoolConfig, proto Protocol, o *options, conns *connCounts) *pool {
	p := &pool{name: cfg.Name, proto: proto, opts: o, cfg: cfg, clients: map[*client]struct{}{}, conns: conns,
		log: o.log.With(zap.String("pool", cfg.Name))}
	p.st = newPoolState(p, cfg)
	return p
}

func (p *pool) listen() error {
	cfg := p.cfg
	lc := net.ListenConfig{KeepAlive: -1} // run sets a client's keepalive, as tcpkeepalive says
	if cfg.ListenNetwork == "unix" {
		// A stale socket file: Reload never binds a path to a socket file that a running pool of
		// its own listens on, by that path or another (see planReload).
		_ = os.Remove(cfg.ListenAddr)
	}
	var ln net.Listener
	var err error
	if cfg.ListenNetwork == "tcp" {
		ln, err = listenTCP(context.Background(), &lc, cfg.ListenAddr)
	} else {
		ln, err = lc.Listen(context.Background(), cfg.ListenNetwork, cfg.ListenAddr)
	}
	if err != nil {
		return fmt.Errorf("pool %s: listen: %w", cfg.Name, err)
	}
	p.ln = ln
	p.conns.open() // closeListener closes it
	if ul, ok := ln.(*net.UnixListener); ok {
		// Closing must not unlink a socket file a newer listener has bound at the same path:
		// closeListener removes the file only if it is still this listener's.
		ul.SetUnlinkOnClose(false)
		p.sockPath = cfg.ListenAddr
		p.sock, _ = os.Lstat(cfg.ListenAddr)
		if cfg.ListenPerm != 0 {
			if err := os.Chmod(cfg.ListenAddr, cfg.ListenPerm); err != nil {
				p.closeListener()
				return fmt.Errorf("pool %s: listen: %w", cfg.Name, err)
			}
		}
	}
	return nil
}

// listenTCP listens on a TCP listen address as nutcracker binds it: on the first address its host
// resolves to (an IP address is its own; the resolver orders a name's addresses as getaddrinfo does,
// by RFC 6724), with a socket of that address's family. An IPv4 address, 0.0.0.0 included, and one
// written IPv4-mapped (::ffff:127.0.0.1), is listened on with "tcp4", so 0.0.0.0 takes the port on
// IPv4 only and leaves it free on every IPv6 address; an IPv6 address with "tcp6", but :: with
// "tcp", which takes the port on IPv4 and IPv6 at once, as nutcracker's :: does where the kernel's
// net.ipv6.bindv6only is 0 (Linux's default). An empty host, which nutcracker refuses, is listened
// on with "tcp", as ::. The host is resolved at each bind, so a name follows its address.
func listenTCP(ctx context.Context, lc *net.ListenConfig, addr string) (net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return lc.Listen(ctx, "tcp", addr)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err == nil && len(ips) == 0 {
			err = &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		if err != nil {
			return nil, &net.OpError{Op: "listen", Net: "tcp", Err: err}
		}
		ip = ips[0]
	}
	ip = ip.Unmap()
	network := "tcp6"
	switch {
	case ip.Is4():
		network = "tcp4"
	case ip.IsUnspecified():
		network = "tcp"
	}
	return lc.Listen(ctx, network, net.JoinHostPort(ip.String(), port))
}

// socketAt reports whether pc's listen address names the socket file the pool's listener bound,
// by its path or by another (a symlinked directory on the way, a hard link). The file is the pool's
// listening socket while the pool runs, unless someone removed it: then no path names it.
func (p *pool) socketAt(pc *PoolConfig) bool {
	if p.sock == nil || pc.ListenNetwork != "unix" {
		return false
	}
	fi, err := os.Lstat(pc.ListenAddr)
	return err == nil && os.SameFile(fi, p.sock)
}

// closeListener closes the pool's listener (again: it does nothing) and, for a unix socket, removes
// its file if the file at the path is still the one it bound.
func (p *pool) closeListener() {
	p.lnClose.Do(func() {
		p.ln.Close()
		p.conns.close()
		if p.sock == nil {
			return
		}
		if fi, err := os.Lstat(p.sockPath); err == nil && os.SameFile(fi, p.sock) {
			_ = os.Remove(p.sockPath)
		}
	})
}

// start starts the pool's servers; it must be called before run, and before any swap.
func (p *pool) start(ctx context.Context) {
	p.mu.Lock()
	if p.poller = newClientPoller(p); p.poller != nil {
		p.poller.start()
	}
	p.st.poller = p.poller
	p.st.start(ctx)
	p.mu.Unlock()
}

// run serves the pool until ctx ends; p.ln must be open and start called.
func (p *pool) run(ctx context.Context) {
	stop := context.AfterFunc(ctx, p.closeListener)
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
		cfg := p.currentCfg()
		if max := cfg.ClientConnections; max > 0 && p.clientConns.Load() >= int64(max) {
			// nutcracker 0.5.0 parses client_connections and ignores it; twemproxy documents it as
			// the most client connections the pool accepts, so a connection past it is closed.
			p.clientRejected.Add(1)
			if ok, held := p.rejectWarns.allow(); ok {
				p.log.Warn("client_connections reached: closing a new client connection",
					zap.Int("client_connections", max), zap.Stringer("client", conn.RemoteAddr()),
					zap.Int64("suppressed", held))
			}
			conn.Close()
			continue
		}
		if tc, ok := conn.(*net.TCPConn); ok && cfg.TCPKeepalive {
			// SO_KEEPALIVE with the kernel's timing, as nutcracker sets it on client connections.
			_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1})
		}
		if w := p.opts.wrapConn; w != nil {
			conn = w(conn)
		}
		c := newClient(p, conn)
		p.clientMu.Lock()
		p.clients[c] = struct{}{}
		p.clientMu.Unlock()
		p.clientConns.Add(1)
		p.conns.open()
		p.wg.Add(1)
		go func() { defer p.wg.Done(); c.serve() }()
	}
	p.closeListener()
	p.clientMu.Lock()
	for c := range p.clients {
		c.closeConn()
	}
	p.clientMu.Unlock()
	p.wg.Wait()
	if p.poller != nil {
		p.poller.close()
	}
	p.mu.Lock()
	p.stopping = true
	st := p.st
	p.mu.Unlock()
	st.cancel()
	st.wg.Wait()
	st.ended()        // a pool that moves, or restarts, shares its servers' state with the new one
	p.retiring.Wait() // their contexts, derived from ctx, have ended too
}

// state returns the pool's current poolState.
func (p *pool) state() *poolState {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.st
}

func (p *pool) currentCfg() *PoolConfig {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.cfg
}

// swap makes cfg the pool's configuration, keeping the listener and the client connections. It
// returns at once: the old servers finish what they were sent and are closed in the background
// (retiring, which run waits for). ctx is the pool's, the one run got: its end cuts them off, and
// the new servers run under it. A cfg that serves as the pool's does (it may differ in lines, or in
// the socket's permission, which Reload applies) changes nothing but the pool's cfg; otherwise the
// servers that keep their name and address keep their state (see carry).
func (p *pool) swap(ctx context.Context, cfg *PoolConfig) {
	p.mu.Lock()
	if sameServing(p.cfg, cfg) {
		p.cfg = cfg
		p.mu.Unlock()
		return
	}
	old := p.st
	p.mu.Unlock()
	p.publish(ctx, p.successor(old, cfg), old, cfg)
}

// successor returns the state that serves cfg after old, not yet started nor published: the
// servers that keep their name and address keep their state (see carry).
func (p *pool) successor(old *poolState, cfg *PoolConfig) *poolState {
	st := newPoolState(p, cfg)
	st.poller = p.poller
	st.carry(old)
	return st
}

// publish starts st, makes it the pool's state in old's place, and retires old in the background.
// A failure may eject a server of old after carry looked at it: it rebuilds the state current
// then, old, so st rebuilds its distribution once published (failure rebuilds the current state
// after recording the ejection: one of the two sees it in st).
func (p *pool) publish(ctx context.Context, st, old *poolState, cfg *PoolConfig) {
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		st.ended() // never started
		return     // run is returning: the pool serves nothing more
	}
	st.start(ctx)
	p.st, p.cfg = st, cfg // old is still p.st: swaps are serialized by the Server's mu
	st.rebuild()
	p.retiring.Add(1)
	p.mu.Unlock()
	grace := 30 * time.Second
	if cfg.Timeout > 0 {
		grace = 2 * cfg.Timeout
	}
	go func() {
		defer p.retiring.Done()
		old.retire(grace)
	}()
}

// sameServing reports whether a and b configure a pool's servers and its handling of requests
// alike: they may differ in their line numbers and in the listen directive, which the caller
// compares (listenKey) and applies (chmod).
func sameServing(a, b *PoolConfig) bool {
	if reflect.ValueOf(a.HashFunc).Pointer() != reflect.ValueOf(b.HashFunc).Pointer() || len(a.Servers) != len(b.Servers) {
		return false
	}
	for i := range a.Servers {
		x, y := a.Servers[i], b.Servers[i]
		x.Line, y.Line = 0, 0
		if x != y {
			return false
		}
	}
	x, y := *a, *b
	for _, c := range []*PoolConfig{&x, &y} {
		c.Line, c.Listen, c.ListenNetwork, c.ListenAddr, c.ListenPerm = 0, "", "", "", 0
		c.HashFunc, c.Servers = nil, nil
	}
	return reflect.DeepEqual(x, y)
}

// carry makes st's servers share the state of old's server of the same name, network and address
// (its serverCore): its ejection (retry time and consecutive failures, unless st's pool no longer
// ejects), the time of its last ejection, its counters and its connections, so that a reload
// neither sends traffic to a server ejected a moment before nor resets its stats, and what old's
// connections count while they drain, and their failures, land in the server st serves (see
// failure). A server of st whose name old's server had at another address or network starts
// fresh, not ejected, with old's counters as its base, taken when st starts (see start): the
// stats and the Prometheus series, keyed by the name, do not go back. st must not have started.
func (st *poolState) carry(old *poolState) {
	byName := make(map[string]*server, len(old.servers))
	for _, s := range old.servers {
		byName[s.cfg.Name] = s
	}
	ejected := false
	for _, s := range st.servers {
		o := byName[s.cfg.Name]
		if o == nil {
			continue
		}
		if o.cfg.Network != s.cfg.Network || o.cfg.Addr != s.cfg.Addr {
			// A new server under the old one's name: fresh, but its counters (reported by name)
			// go on from the old one's, as they are when st is published. What the old one's
			// connections count while they drain after that is not added.
			s.movedFrom = o.serverCore
			continue
		}
		c := o.serverCore
		if !st.cfg.AutoEjectHosts {
			c.failures.Store(0)
			c.nextRetry.Store(0)
		} else if c.nextRetry.Load() != 0 {
			ejected = true
		}
		c.mu.Lock()
		c.conns = append(c.conns, s.conns...)
		c.mu.Unlock()
		s.serverCore = c
	}
	if ejected {
		st.rebuild() // the distribution without the ejected servers, and their retry time
	}
}
