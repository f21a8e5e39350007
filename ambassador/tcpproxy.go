package ambassador

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// TCPProxy is an L4 proxy over a Cluster: each client connection goes to one endpoint (dial
// failures are retried on others), with a connect timeout, an idle timeout, a connection limit and
// half-close. On Linux, bytes move with splice(2). Once its endpoint is dialed, a connection is
// relayed by one of the proxy's event loops (WithEventLoops; see tcploop_linux.go), which copy
// small messages through a buffer of the loop, sending a pass's messages in one io_uring_enter
// where the kernel allows it, and splice bulk through a pipe of the connection (Statusz counts the
// bytes each way and the sends); with the loops off (WithEventLoops(0)) a goroutine per
// direction copies with (*net.TCPConn).ReadFrom from the other *net.TCPConn, never through a
// wrapper, which the net package splices.
type TCPProxy struct {
	addr    string
	cluster *Cluster
	cfg     config
	log     *zap.Logger
	dialer  net.Dialer

	running atomic.Bool
	ready   chan struct{}
	bound   net.Addr
	conns   atomic.Int64
	total   atomic.Int64
	refused atomic.Int64

	loops *tcpLoops // nil: the goroutine path relays

	mu     sync.Mutex
	open   map[*net.TCPConn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// spliceChunk bounds one splice-backed ReadFrom so the idle deadline is refreshed between chunks.
const spliceChunk = 4 << 20

// NewTCPProxy returns a proxy that will listen on addr and forward connections to cluster.
// Options used: WithConnectTimeout, WithIdleTimeout, WithMaxConns, WithRetries, WithLogger and
// WithEventLoops (how many loops relay connections: default GOMAXPROCS, 0 the goroutine path).
func NewTCPProxy(addr string, cluster *Cluster, opts ...Option) (*TCPProxy, error) {
	if cluster == nil {
		return nil, &ConfigError{Field: "cluster", Reason: "is nil"}
	}
	cfg := newConfig(opts)
	if cfg.maxConns <= 0 {
		return nil, &ConfigError{Field: "max conns", Reason: "must be > 0"}
	}
	if cfg.retries < 0 {
		return nil, &ConfigError{Field: "retries", Reason: "must be >= 0"}
	}
	return &TCPProxy{
		addr: addr, cluster: cluster, cfg: cfg,
		log:    cfg.logger.Named("ambassador").With(zap.String("proxy", "tcp")),
		dialer: net.Dialer{Timeout: cfg.connectTimeout, KeepAlive: 30 * time.Second},
		ready:  make(chan struct{}),
		open:   map[*net.TCPConn]struct{}{},
	}, nil
}

// Ready is closed once Run is listening and its cluster has taken its source's endpoints. It is
// never closed when Run ends before that: the cluster's source failed at start (a File source's
// missing file; Run returns the error) or ctx ended first.
func (p *TCPProxy) Ready() <-chan struct{} { return p.ready }

// Addr returns the listening address once Ready is closed (nil before).
func (p *TCPProxy) Addr() net.Addr {
	select {
	case <-p.ready:
		return p.bound
	default:
		return nil
	}
}

// Run accepts and proxies connections and runs the cluster until ctx ends; then it closes the
// listener and every proxied connection and returns nil once all goroutines have exited. It
// ends early with the cluster's error when the cluster's Run fails, here or, for a cluster
// another proxy runs, there. A cluster another proxy runs is taken over, and run here, when that
// proxy stops.
func (p *TCPProxy) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	la, err := net.ResolveTCPAddr("tcp", p.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ln, err := net.ListenTCP("tcp", la)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var loopWG sync.WaitGroup
	if n := p.cfg.eventLoops; n != 0 && loopsSupported {
		if n < 0 {
			n = runtime.GOMAXPROCS(0)
		}
		if p.loops, err = newTCPLoops(p, n); err != nil {
			ln.Close()
			return err
		}
		p.loops.start(&loopWG)
	}
	p.bound = ln.Addr()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	clusterErr := make(chan error, 1)
	go func() { clusterErr <- runShared(ctx, p.cluster) }()
	var acceptDone chan struct{} // stays nil when the proxy is never ready
	if awaitReady(ctx, clusterErr, p.cluster) {
		acceptDone = make(chan struct{})
		close(p.ready)
		p.log.Info("listening", zap.Stringer("addr", ln.Addr()))
		go func() {
			defer close(acceptDone)
			p.accept(ctx, ln)
		}()
	}

	// The accept loop ends only when ln is closed (below) or ctx ends (acceptNext backs off past
	// every other failure): it has no error of its own to end Run with.
	var runErr error
	select {
	case <-ctx.Done():
	case err := <-clusterErr:
		clusterErr <- err
		if err != nil {
			runErr = fmt.Errorf("cluster %s: %w", p.cluster.Name(), err)
		}
	}
	ln.Close()
	if acceptDone != nil {
		<-acceptDone
	}
	p.mu.Lock()
	p.closed = true
	for c := range p.open {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	if p.loops != nil {
		p.loops.stop() // every connection handed to a loop is closed
		loopWG.Wait()
	}
	cancel()
	<-clusterErr
	return runErr
}

// accept accepts connections on ln, serving each on its own goroutine (serve may hand it to a loop),
// until ln is closed or ctx ends (see acceptNext).
func (p *TCPProxy) accept(ctx context.Context, ln *net.TCPListener) {
	var backoff acceptBackoff
	for {
		c, err := acceptNext(ctx, p.log, &backoff, ln.AcceptTCP)
		if err != nil {
			return
		}
		if !p.track(c) {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(ctx, c)
		}()
	}
}

// track registers c for closing at shutdown; false means the proxy is shutting down.
func (p *TCPProxy) track(c *net.TCPConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.open[c] = struct{}{}
	return true
}

func (p *TCPProxy) untrack(c *net.TCPConn) {
	p.mu.Lock()
	delete(p.open, c)
	p.mu.Unlock()
	c.Close()
}

func (p *TCPProxy) serve(ctx context.Context, client *net.TCPConn) {
	defer p.untrack(client)
	if n := p.conns.Add(1); n > int64(p.cfg.maxConns) {
		p.conns.Add(-1)
		p.refused.Add(1)
		return
	}
	handed := false
	defer func() {
		if !handed {
			p.conns.Add(-1)
		}
	}()
	p.total.Add(1)
	key := HashString(hostOnly(client.RemoteAddr().String()))

	var tried triedSet
	for attempt := 0; attempt <= p.cfg.retries; attempt++ {
		lease, err := p.cluster.Acquire(ctx, key, tried.list())
		if err != nil {
			p.log.Debug("no endpoint", zap.Error(err))
			return
		}
		b := lease.Backend
		start := time.Now()
		nc, err := p.dialer.DialContext(ctx, "tcp", b.Addr)
		b.c.Report(b, err == nil, time.Since(start))
		if err != nil {
			lease.Release()
			p.log.Debug("dial endpoint", zap.String("endpoint", b.Addr), zap.Error(err))
			tried.add(b)
			continue
		}
		up := nc.(*net.TCPConn)
		if p.loops != nil && p.loops.take(client, up, lease) {
			// The loop holds duplicates of both sockets, the lease and the connection's count.
			handed = true
			up.Close()
			return
		}
		if !p.track(up) {
			up.Close()
			lease.Release()
			return
		}
		p.pipe(client, up)
		p.untrack(up)
		lease.Release()
		return
	}
}

// errIdle ends a connection with no traffic either way for the idle timeout.
var errIdle = errors.New("idle timeout")

// pipe copies both ways until both directions are done or either fails or idles out.
func (p *TCPProxy) pipe(client, up *net.TCPConn) {
	var clientIdle, upIdle atomic.Bool
	done := make(chan error, 1)
	go func() { done <- p.half(up, client, &clientIdle, &upIdle) }()
	err := p.half(client, up, &upIdle, &clientIdle)
	if err != nil {
		client.Close()
		up.Close()
	}
	if err2 := <-done; err2 != nil && err == nil {
		client.Close()
		up.Close()
	}
}

// half copies src to dst with splice (ReadFrom on *net.TCPConn with an *io.LimitedReader over a
// *net.TCPConn, which the net package splices on Linux), refreshing src's read deadline between
// chunks for the idle timeout. On EOF it half-closes dst and returns nil.
func (p *TCPProxy) half(dst, src *net.TCPConn, mine, other *atomic.Bool) error {
	idle := p.cfg.idleTimeout
	for {
		if idle > 0 {
			src.SetReadDeadline(time.Now().Add(idle))
		}
		lr := io.LimitedReader{R: src, N: spliceChunk}
		n, err := dst.ReadFrom(&lr)
		if n > 0 {
			mine.Store(false)
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if n == 0 {
					mine.Store(true)
					if other.Load() {
						return errIdle
					}
				}
				continue
			}
			return err
		}
		if lr.N > 0 { // EOF from src
			mine.Store(true)
			dst.CloseWrite()
			return nil
		}
	}
}

// Statusz is the proxy's key/value table for a /statusz page.
func (p *TCPProxy) Statusz() (string, []string, [][]string) {
	addr := p.addr
	if a := p.Addr(); a != nil {
		addr = a.String()
	}
	var c tcpCounts
	if p.Addr() != nil && p.loops != nil { // Run sets loops before Ready
		c = p.loops.counts()
	}
	return "ambassador tcp proxy", []string{"key", "value"}, [][]string{
		{"listen", addr},
		{"cluster", p.cluster.Name()},
		{"active connections", strconv.FormatInt(p.conns.Load(), 10)},
		{"connections", strconv.FormatInt(p.total.Load(), 10)},
		{"refused (limit)", strconv.FormatInt(p.refused.Load(), 10)},
		{"max connections", strconv.Itoa(p.cfg.maxConns)},
		{"relayed on event loops", strconv.FormatInt(c.relays, 10)},
		{"splice calls on event loops", strconv.FormatInt(c.splices, 10)},
		{"bytes spliced on event loops", strconv.FormatInt(c.spliced, 10)},
		{"bytes copied on event loops", strconv.FormatInt(c.copied, 10)},
		{"sends through io_uring on event loops", strconv.FormatInt(c.batched, 10)},
		{"io_uring_enter calls on event loops", strconv.FormatInt(c.enters, 10)},
	}
}

// tcpCounts are the event loops' counters in Statusz.
type tcpCounts struct {
	relays  int64 // relays served
	splices int64 // splice(2) calls
	spliced int64 // bytes read with splice into a pipe
	copied  int64 // bytes read into a loop's buffer
	batched int64 // sends made through a loop's io_uring
	enters  int64 // io_uring_enter calls made for them
}
