package statsd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/podblocks/podblocks/internal/unixsock"
)

// Exporter receives statsd lines and exposes them as Prometheus metrics, like statsd_exporter.
// It is a component: New validates, Run listens and serves until its context ends. Gather
// returns the metrics built from statsd samples; Handle feeds lines without a listener.
type Exporter struct {
	o   options
	cfg atomic.Pointer[MappingConfig]
	reg *registry
	m   *metrics

	sampleCounters [Set + 1]prometheus.Counter
	errCounters    []prometheus.Counter
	total          struct{ lines, samples, errors, conflicts atomic.Int64 }
	// lastConflictLog is when a conflict was last logged at warn level (unix nanoseconds).
	lastConflictLog atomic.Int64

	pool  sync.Pool // *worker for Handle
	ready chan struct{}

	mu       sync.Mutex
	udpAddr  net.Addr
	tcpAddr  net.Addr
	unixAddr net.Addr
	running  bool
}

// conflictLogDue reports whether a conflict seen at now (unix nanoseconds) is logged at warn level:
// at most one a second, across workers.
func (e *Exporter) conflictLogDue(now int64) bool {
	last := e.lastConflictLog.Load()
	return (last == 0 || now-last >= int64(time.Second)) && e.lastConflictLog.CompareAndSwap(last, now)
}

// New returns an Exporter; it starts nothing.
func New(opts ...Option) (*Exporter, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.readers < 0 || o.readBuffer < 0 || o.maxLine <= 0 || o.tcpIdle <= 0 || o.maxConns <= 0 || o.sweepEvery <= 0 {
		return nil, fmt.Errorf("statsd: invalid option: readers, read buffer, line length, idle timeout, connection limit and sweep interval must be positive")
	}
	if o.readers == 0 {
		o.readers = runtime.GOMAXPROCS(0)
	}
	e := &Exporter{o: o, reg: newRegistry(), ready: make(chan struct{})}
	e.cfg.Store(o.mapping)
	m, err := newMetrics(o.registerer, e.reg)
	if err != nil {
		return nil, fmt.Errorf("statsd: register metrics: %w", err)
	}
	e.m = m
	if o.reserved != nil {
		if err := e.reg.reserveGathered(o.reserved); err != nil {
			return nil, fmt.Errorf("statsd: reserved names: %w", err)
		}
	}
	for t := Counter; t <= Set; t++ {
		e.sampleCounters[t] = m.samples.WithLabelValues(t.String())
	}
	for _, r := range allReasons {
		e.errCounters = append(e.errCounters, m.lineErrors.WithLabelValues(r))
	}
	e.pool.New = func() any { return newWorker(e) }
	return e, nil
}

// SetMapping replaces the mapping config (for example on SIGHUP). Series that exist keep their
// names; new samples are mapped with c. nil maps nothing.
func (e *Exporter) SetMapping(c *MappingConfig) { e.cfg.Store(c) }

// Mapping returns the mapping config in use.
func (e *Exporter) Mapping() *MappingConfig { return e.cfg.Load() }

// Handle processes a packet of newline-separated statsd lines as if it had been received. It is
// safe for concurrent use and needs no Run.
func (e *Exporter) Handle(packet []byte) {
	w := e.pool.Get().(*worker)
	w.begin(time.Now().UnixNano())
	w.handle(packet)
	w.flush()
	e.pool.Put(w)
}

// Gather implements prometheus.Gatherer: the metrics built from statsd samples. It never returns
// an error; serve it next to the process's own registry with prometheus.Gatherers.
func (e *Exporter) Gather() ([]*dto.MetricFamily, error) { return e.reg.Gather() }

// Ready is closed once every configured listener is listening.
func (e *Exporter) Ready() <-chan struct{} { return e.ready }

// UDPAddr is the UDP listener's address once Ready.
func (e *Exporter) UDPAddr() (net.Addr, error) { return e.addr(&e.udpAddr) }

// TCPAddr is the TCP listener's address once Ready.
func (e *Exporter) TCPAddr() (net.Addr, error) { return e.addr(&e.tcpAddr) }

// UnixgramAddr is the unixgram listener's address once Ready.
func (e *Exporter) UnixgramAddr() (net.Addr, error) { return e.addr(&e.unixAddr) }

func (e *Exporter) addr(a *net.Addr) (net.Addr, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if *a == nil {
		return nil, ErrNoListener
	}
	return *a, nil
}

// Statusz is a key/value snapshot for the hook server's /statusz page.
func (e *Exporter) Statusz() (string, []string, [][]string) {
	fams, series := e.reg.counts()
	rows := [][]string{}
	e.mu.Lock()
	for _, l := range []struct {
		k string
		a net.Addr
	}{{"udp", e.udpAddr}, {"tcp", e.tcpAddr}, {"unixgram", e.unixAddr}} {
		if l.a != nil {
			rows = append(rows, []string{l.k, l.a.String()})
		}
	}
	e.mu.Unlock()
	mappings := 0
	if c := e.cfg.Load(); c != nil {
		mappings = len(c.Mappings)
	}
	rows = append(rows,
		[]string{"mappings", strconv.Itoa(mappings)},
		[]string{"lines", strconv.FormatInt(e.total.lines.Load(), 10)},
		[]string{"samples", strconv.FormatInt(e.total.samples.Load(), 10)},
		[]string{"errors", strconv.FormatInt(e.total.errors.Load(), 10)},
		[]string{"type conflicts", strconv.FormatInt(e.total.conflicts.Load(), 10)},
		[]string{"families", strconv.Itoa(fams)},
		[]string{"series", strconv.Itoa(series)},
	)
	return "statsd adapter", []string{"key", "value"}, rows
}

// Run listens on the configured addresses and processes statsd lines until ctx ends. It returns
// nil when ctx ended it, or the listen error; it returns only after every goroutine it started
// has exited. Run may be called once.
func (e *Exporter) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.running {
		e.mu.Unlock()
		return errors.New("statsd: Run called twice")
	}
	e.running = true
	e.mu.Unlock()

	var closers []io.Closer
	closeAll := func() {
		for _, c := range closers {
			c.Close()
		}
	}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fail := func(err error) error {
		closeAll()
		wg.Wait()
		return err
	}

	lc := net.ListenConfig{}
	if e.o.udp != "" {
		pc, err := lc.ListenPacket(ctx, "udp", e.o.udp)
		if err != nil {
			return fail(fmt.Errorf("statsd: listen udp: %w", err))
		}
		conn := pc.(*net.UDPConn)
		closers = append(closers, conn)
		e.setReadBuffer(conn)
		e.mu.Lock()
		e.udpAddr = conn.LocalAddr()
		e.mu.Unlock()
		for range e.o.readers {
			wg.Go(func() { e.readUDP(conn) })
		}
	}
	if e.o.unixgram != "" {
		conn, err := unixsock.ListenPacket(e.o.unixgram) // replaces a stale socket file, not a live one
		if err != nil {
			return fail(fmt.Errorf("statsd: listen unixgram: %w", err))
		}
		closers = append(closers, conn) // removes the socket file too
		if err := os.Chmod(e.o.unixgram, os.FileMode(e.o.unixMode)); err != nil {
			return fail(fmt.Errorf("statsd: chmod unixgram socket: %w", err))
		}
		e.setReadBuffer(conn)
		e.mu.Lock()
		e.unixAddr = conn.LocalAddr()
		e.mu.Unlock()
		for range e.o.readers {
			wg.Go(func() { e.readDatagrams(conn, "unixgram") })
		}
	}
	var conns *connSet
	if e.o.tcp != "" {
		ln, err := lc.Listen(ctx, "tcp", e.o.tcp)
		if err != nil {
			return fail(fmt.Errorf("statsd: listen tcp: %w", err))
		}
		closers = append(closers, ln)
		e.mu.Lock()
		e.tcpAddr = ln.Addr()
		e.mu.Unlock()
		conns = &connSet{m: map[net.Conn]struct{}{}}
		wg.Go(func() { e.acceptTCP(ln, conns, &wg) })
	}
	wg.Go(func() { e.sweepLoop(ctx) })
	close(e.ready)

	<-ctx.Done()
	closeAll()
	if conns != nil {
		conns.closeAll()
	}
	wg.Wait()
	return nil
}

// setReadBuffer enlarges a datagram socket's receive buffer, forcing past rmem_max where the
// platform allows it (see forceReadBuffer).
func (e *Exporter) setReadBuffer(conn syscall.Conn) {
	if e.o.readBuffer == 0 {
		return
	}
	if err := forceReadBuffer(conn, e.o.readBuffer); err != nil {
		e.o.logger.Warn("set socket read buffer", zap.Int("bytes", e.o.readBuffer), zap.Error(err))
	}
}

const batchSize = 16 // datagrams per recvmmsg

// readUDP reads batches of datagrams with recvmmsg and processes them on this goroutine.
func (e *Exporter) readUDP(conn *net.UDPConn) {
	type batchReader interface {
		ReadBatch([]ipv4.Message, int) (int, error)
	}
	var br batchReader
	if a, ok := conn.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		br = ipv4.NewPacketConn(conn)
	} else {
		br = ipv6.NewPacketConn(conn)
	}
	msgs := make([]ipv4.Message, batchSize)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 65536)}
	}
	w := newWorker(e)
	packets := e.m.packets.WithLabelValues("udp")
	for {
		n, err := br.ReadBatch(msgs, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			e.o.logger.Debug("read udp", zap.Error(err))
			continue
		}
		w.begin(time.Now().UnixNano())
		for i := range n {
			w.handle(msgs[i].Buffers[0][:msgs[i].N])
		}
		w.flush()
		packets.Add(float64(n))
	}
}

func (e *Exporter) readDatagrams(conn net.PacketConn, transport string) {
	buf := make([]byte, 65536)
	w := newWorker(e)
	packets := e.m.packets.WithLabelValues(transport)
	for {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			e.o.logger.Debug("read datagram", zap.String("transport", transport), zap.Error(err))
			continue
		}
		w.begin(time.Now().UnixNano())
		w.handle(buf[:n])
		w.flush()
		packets.Inc()
	}
}

type connSet struct {
	mu     sync.Mutex
	m      map[net.Conn]struct{}
	closed bool
}

func (s *connSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.m[c] = struct{}{}
	return true
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

func (s *connSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.m {
		c.Close()
	}
}

func (e *Exporter) acceptTCP(ln net.Listener, conns *connSet, wg *sync.WaitGroup) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			e.o.logger.Debug("accept tcp", zap.Error(err))
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		if conns.len() >= e.o.maxConns {
			e.m.tcpRejected.Inc()
			c.Close()
			continue
		}
		if !conns.add(c) {
			c.Close()
			return
		}
		e.m.tcpConns.Inc()
		wg.Go(func() {
			defer conns.remove(c)
			defer c.Close()
			e.serveTCP(c)
		})
	}
}

// serveTCP processes newline-separated lines from one connection until EOF, an error, or the
// idle timeout.
func (e *Exporter) serveTCP(c net.Conn) {
	r := bufio.NewReaderSize(c, e.o.maxLine)
	w := newWorker(e)
	packets := e.m.packets.WithLabelValues("tcp")
	tooLong := slicesIndex(allReasons, "line_too_long")
	skipping := false
	for {
		if r.Buffered() == 0 {
			w.flush()
			now := time.Now()
			c.SetReadDeadline(now.Add(e.o.tcpIdle))
			w.begin(now.UnixNano())
		}
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if !skipping {
				w.errs[tooLong]++
			}
			skipping = true
			continue
		}
		if len(line) > 0 {
			if skipping {
				skipping = false // the tail of an over-long line
			} else {
				w.handle(line)
				packets.Inc()
			}
		}
		if err != nil {
			w.flush()
			if err != io.EOF && !errors.Is(err, net.ErrClosed) {
				e.o.logger.Debug("read tcp", zap.Stringer("remote", c.RemoteAddr()), zap.Error(err))
			}
			return
		}
	}
}

func slicesIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return len(s) - 1
}

func (e *Exporter) sweepLoop(ctx context.Context) {
	t := time.NewTicker(e.o.sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if n := e.reg.sweep(now.UnixNano()); n > 0 {
				e.m.expired.Add(float64(n))
			}
		}
	}
}
