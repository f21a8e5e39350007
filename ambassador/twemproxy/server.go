package twemproxy

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Protocols gives the Server the wire protocol for each kind of pool: Memcache for pools without
// "redis: true", Redis for the others.
type Protocols struct {
	Memcache Protocol
	Redis    Protocol
}

// Server serves every pool of a twemproxy configuration, as nutcracker does, and can be reloaded
// with a new configuration without dropping client connections.
type Server struct {
	protos  Protocols
	opts    *options
	metrics *collector
	ready   chan struct{}
	started time.Time

	mu      sync.Mutex
	cfg     *Config
	running map[string]*poolRun
	order   []string // pool names in config order
	ctx     context.Context
	closed  bool

	totalConns atomic.Int64
}

type poolRun struct {
	p      *pool
	ctx    context.Context // the pool's lifetime: a Reload's new servers run under it
	cancel context.CancelFunc
	done   chan struct{}
}

// NewServer checks cfg and returns a Server; it starts nothing. A Config built in Go rather than by
// Parse must set what Parse would have (Distribution, ServerConnections >= 1, every server's Network,
// Addr, Weight >= 1 and unique Name, ...): what is missing or invalid is a *ConfigError naming the
// pool and the field.
func NewServer(cfg *Config, protos Protocols, opts ...Option) (*Server, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(o)
	}
	s := &Server{protos: protos, opts: o, cfg: cfg, ready: make(chan struct{}), running: map[string]*poolRun{}}
	if err := s.check(cfg); err != nil {
		return nil, err
	}
	s.metrics = newCollector(s)
	if o.reg != nil {
		if err := o.reg.Register(s.metrics); err != nil {
			return nil, fmt.Errorf("twemproxy: register metrics: %w", err)
		}
	}
	return s, nil
}

// check validates cfg, and that the Server has a protocol for each of its pools.
func (s *Server) check(cfg *Config) error {
	if err := validate(cfg); err != nil {
		return err
	}
	for _, pc := range cfg.Pools {
		if s.protoFor(pc) == nil {
			return &ConfigError{Line: pc.Line, Pool: pc.Name, Key: "redis", Err: errors.New("no protocol implementation for this pool kind")}
		}
	}
	return nil
}

func (s *Server) protoFor(pc *PoolConfig) Protocol {
	if pc.Redis {
		return s.protos.Redis
	}
	return s.protos.Memcache
}

// Ready is closed once every pool listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Config returns the configuration being served.
func (s *Server) Config() *Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Run listens on every pool's address and serves until ctx ends; it returns nil then, or an error
// if a listener cannot be opened. It returns after every connection and goroutine is closed.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.ctx != nil || s.closed {
		s.mu.Unlock()
		return errors.New("twemproxy: Run called twice")
	}
	pools := make([]*pool, 0, len(s.cfg.Pools))
	for _, pc := range s.cfg.Pools {
		p := newPool(pc, s.protoFor(pc), s.opts, &s.totalConns)
		if err := p.listen(); err != nil {
			for _, q := range pools {
				q.closeListener()
			}
			s.closed = true
			s.mu.Unlock()
			return err
		}
		pools = append(pools, p)
	}
	s.ctx = ctx
	s.started = time.Now()
	for _, p := range pools {
		s.startPool(p)
	}
	s.mu.Unlock()

	var statsDone chan struct{}
	if s.opts.statsAddr != "" {
		ln, err := listenStats(s.opts.statsAddr)
		if err != nil {
			s.shutdown()
			return err
		}
		statsDone = make(chan struct{})
		go func() { defer close(statsDone); s.serveStats(ctx, ln) }()
	}
	close(s.ready)
	<-ctx.Done()
	s.shutdown()
	if statsDone != nil {
		<-statsDone
	}
	return nil
}

func (s *Server) shutdown() {
	s.mu.Lock()
	s.closed = true
	runs := make([]*poolRun, 0, len(s.running))
	for _, r := range s.running {
		runs = append(runs, r)
	}
	s.mu.Unlock()
	for _, r := range runs {
		r.cancel()
		<-r.done
	}
}

// startPool must be called with s.mu held.
func (s *Server) startPool(p *pool) {
	ctx, cancel := context.WithCancel(s.ctx)
	r := &poolRun{p: p, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	s.running[p.name] = r
	s.order = appendUnique(s.order, p.name)
	p.start(ctx)
	go func() { defer close(r.done); p.run(ctx) }()
}

func appendUnique(list []string, v string) []string {
	for _, x := range list {
		if x == v {
			return list
		}
	}
	return append(list, v)
}

// Reload switches to cfg. Pools whose listen address and kind (memcache/redis) are unchanged keep
// their listener and client connections (a new permission of a unix socket is applied to its file)
// and get the new servers and options: a pool whose configuration is otherwise unchanged is left as
// it is, and servers that keep their name and address keep their ejection and their counters.
// Requests already sent finish on the old servers, which Reload does not wait for (they close in the
// background, cut off once the pool's timeout has passed twice, or 30s, or when the pool closes).
// New pools start listening; removed pools close. If cfg cannot be applied (a new address cannot be
// bound), nothing changes and the error is returned; so it is if cfg is invalid (see NewServer).
func (s *Server) Reload(cfg *Config) error {
	if err := s.check(cfg); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil || s.closed {
		return ErrClosed
	}
	type change struct {
		pc      *PoolConfig
		keep    *poolRun // swap in place
		replace *poolRun // stop, then start fresh
		fresh   *pool
	}
	var changes []change
	wanted := map[string]bool{}
	for _, pc := range cfg.Pools {
		wanted[pc.Name] = true
		old := s.running[pc.Name]
		switch {
		case old != nil && listenKey(old.p.cfg) == listenKey(pc) && old.p.cfg.Redis == pc.Redis:
			changes = append(changes, change{pc: pc, keep: old})
		default:
			changes = append(changes, change{pc: pc, replace: old})
		}
	}
	// Open the new listeners first, so a bind failure changes nothing. A pool that moves to an
	// address another running pool (or its own old self) holds is bound after that one stops.
	var opened []*pool
	for i, ch := range changes {
		if ch.keep != nil {
			continue
		}
		if s.listenHeld(listenKey(ch.pc)) {
			continue
		}
		p := newPool(ch.pc, s.protoFor(ch.pc), s.opts, &s.totalConns)
		if err := p.listen(); err != nil {
			for _, q := range opened {
				q.closeListener()
			}
			return fmt.Errorf("twemproxy: reload: %w", err)
		}
		opened = append(opened, p)
		changes[i].fresh = p
	}
	for name, r := range s.running {
		if !wanted[name] {
			r.cancel()
			<-r.done
			delete(s.running, name)
		}
	}
	var errs []error
	for _, ch := range changes {
		switch {
		case ch.keep != nil:
			if err := ch.keep.p.chmod(ch.pc); err != nil {
				errs = append(errs, err)
			}
			ch.keep.p.swap(ch.keep.ctx, ch.pc) // the old servers drain without s.mu held
		default:
			if ch.replace != nil {
				ch.replace.cancel()
				<-ch.replace.done
				delete(s.running, ch.pc.Name)
			}
			p := ch.fresh
			if p == nil {
				p = newPool(ch.pc, s.protoFor(ch.pc), s.opts, &s.totalConns)
				if err := p.listen(); err != nil {
					errs = append(errs, err)
					continue
				}
			}
			s.startPool(p)
		}
	}
	s.order = s.order[:0]
	for _, pc := range cfg.Pools {
		s.order = append(s.order, pc.Name)
	}
	s.cfg = cfg
	s.opts.log.Info("configuration reloaded", zap.Int("pools", len(cfg.Pools)))
	return errors.Join(errs...)
}

func (s *Server) listenHeld(key string) bool {
	for _, r := range s.running {
		if listenKey(r.p.cfg) == key {
			return true
		}
	}
	return false
}

// listenKey identifies the socket a pool listens on: a pool whose key is unchanged keeps its listener
// (a change of the unix socket's permission alone is applied to the file).
func listenKey(pc *PoolConfig) string {
	addr := pc.ListenAddr
	if pc.ListenNetwork == "unix" {
		addr = filepath.Clean(addr)
	}
	return pc.ListenNetwork + " " + addr
}
