package twemproxy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
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

	conns connCounts // curr_connections and total_connections

	listenHook func(network, addr string) error // tests: an error fails the bind of that address
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
	if err := s.check(cfg, nil); err != nil {
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
func (s *Server) check(cfg *Config, kept map[*PoolConfig]net.Addr) error {
	if err := validate(cfg, kept); err != nil {
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
		p, err := s.openPool(pc)
		if err != nil {
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

// Reload switches to cfg. Pools whose listen address and kind (memcache/redis) are unchanged
// keep their listener and client connections (a new permission of a unix socket is applied to
// its file) and get the new servers and options: a pool whose configuration is otherwise
// unchanged is left as it is, and servers that keep their name and address keep their ejection
// and their counters. A TCP port is compared by number (022121 is 22121); a unix socket path
// that names the pool's socket file by another path (through a symlinked directory, or a hard
// link) is the same address; a symlink to the socket file itself is another: the pool moves
// there, its clients closed, and its new socket replaces the symlink. Requests already sent
// finish on the old servers, which Reload does not wait for (they close in the background, cut
// off once the pool's timeout has passed twice, or 30s, or when the pool closes). New pools
// start listening; removed pools close; a pool whose address or kind changes closes, with its
// clients, and starts anew on its new address.
//
// Reload before Run replaces the configuration Run will serve, checked as NewServer checks it: a
// reload trigger (SIGHUP, a file watch) that fires while the server starts is then not lost.
// After Run has returned, or once its context has ended, Reload returns ErrClosed.
//
// Reload applies all of cfg or nothing: if cfg is invalid (see NewServer) or a new address
// cannot be bound, it returns the error and every pool serves as before. Two pools of cfg whose
// TCP addresses certainly collide on one port, kept, moved or new, make cfg invalid: equal IP
// addresses, a wildcard beside an address of its family (0.0.0.0 beside 127.0.0.2, :: beside
// ::1), or on Linux :: (or an empty host) beside any host, a name too, which Go listens on for
// IPv4 and IPv6 at once as nutcracker does; 0.0.0.0 is IPv4 only, as nutcracker binds it, and
// leaves the port free on IPv6 addresses (see hostsCollide). A kept pool counts by the address its
// listener is bound to, so a kept pool on a name collides with a new 0.0.0.0 on its port if the
// name was bound on an IPv4 address. The error is a *ConfigError on the new or moved pool of the
// two (on the later one if both are), which names the other and wraps syscall.EADDRINUSE. A new or
// moved pool on a kept pool's socket file by another path is refused too, with an error
// (syscall.EADDRINUSE) that names the kept pool. Either way Reload refuses cfg before it changes
// anything. Where one host is a name, not a kept pool's, and the other is not :: (or an empty
// host) on Linux, whether they collide is known only at the bind (a name is bound on the first
// address it resolves to), which fails with that error. Reload then binds the new
// addresses while the old pools serve; an address a pool of the old configuration holds (pools
// that swap addresses, a pool that changes kind, a removed pool's address taken by another, a
// pool moved to another host on its port, such as 127.0.0.1:22121 to 0.0.0.0:22121) is bound
// only once all the others are, by stopping the pools that hold it. Two pools that swap their
// addresses thus serve the new mapping.
//
// A failed reload costs clients only there: if one of those binds fails, the stopped pools are
// started again on their old addresses with the configuration they served, but the clients they
// had are closed. The bind of an address a pool of the old configuration holds fails only for
// what Reload cannot know before it tries: another process holds the address (or an address that
// overlaps it on its port), or a host name on its port, its own or another pool's, resolves onto
// the other's address, or onto IPv4 beside 0.0.0.0 (off Linux, also a name beside ::). Listeners
// do not set SO_REUSEPORT, which would let two bind one port at once: it would also let any other
// process of the same user bind a pool's port and take a share of its connections unnoticed.
func (s *Server) Reload(cfg *Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(cfg, s.keptListeners(cfg)); err != nil {
		return err
	}
	if s.closed || s.ctx != nil && s.ctx.Err() != nil { // Run is returning: its pools are closing
		return ErrClosed
	}
	if s.ctx == nil { // before Run: nothing listens yet, and Run serves cfg
		s.cfg = cfg
		s.opts.log.Info("configuration replaced before Run", zap.Int("pools", len(cfg.Pools)))
		return nil
	}
	plan := s.planReload(cfg)
	if err := plan.refuseKept(); err != nil {
		return fmt.Errorf("twemproxy: reload: %w", err)
	}
	restoreModes, err := chmodKept(plan.keep)
	if err != nil {
		return fmt.Errorf("twemproxy: reload: %w", err)
	}
	opened, held, err := s.bindFree(plan)
	if err != nil {
		restoreModes()
		return fmt.Errorf("twemproxy: reload: %w", err)
	}
	stopped, err := s.bindHeld(plan, held, opened)
	if err != nil {
		restoreModes()
		return errors.Join(fmt.Errorf("twemproxy: reload: %w", err), s.restart(stopped))
	}
	s.commitReload(cfg, plan, opened, stopped)
	return nil
}

// reloadPlan is what a Reload does with each pool.
type reloadPlan struct {
	keep    []keptPool            // running pools that keep their listener, with their new config
	fresh   []*PoolConfig         // pools that need a new listener, in config order
	closing map[string]*poolRun   // by name: the pools removed, or replaced by a fresh one
	holders map[string][]*poolRun // by fresh pool's name: the closing pools whose listener occupies its address
}

// refuseKept returns the error of the first fresh pool that names a kept pool's socket file by
// another path, or nil: its bind would remove the kept pool's file. Reload asks before it stops or
// binds anything. (A fresh pool's TCP address that certainly collides with a kept pool's makes cfg
// invalid: see validate.)
func (plan *reloadPlan) refuseKept() error {
	for _, pc := range plan.fresh {
		for _, k := range plan.keep {
			if k.r.p.socketAt(pc) {
				return fmt.Errorf("pool %s: listen %s %s: %w%s", pc.Name, pc.ListenNetwork, pc.ListenAddr,
					syscall.EADDRINUSE, keptHolds(k.pc))
			}
		}
	}
	return nil
}

// explainBind adds to err, pc's failed bind, why: a kept pool listens on the same port on a host
// that overlaps pc's, and serves on through the reload.
func (plan *reloadPlan) explainBind(pc *PoolConfig, err error) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	for _, k := range plan.keep {
		if bindKey(k.pc) == bindKey(pc) && hostsOverlap(k.pc, pc) {
			return fmt.Errorf("%w%s", err, keptHolds(k.pc))
		}
	}
	return err
}

// keptHolds says why a bind on the port or the socket file of kept, a pool that keeps its
// address, fails.
func keptHolds(kept *PoolConfig) string {
	if kept.ListenNetwork == "unix" {
		return fmt.Sprintf(" (pool %q listens on %s, the same socket file, and keeps it through this reload: "+
			"move one of the two pools to another path)", kept.Name, kept.ListenAddr)
	}
	return fmt.Sprintf(" (pool %q listens on %s, the same port, and keeps it through this reload: "+
		"move one of the two pools to another port)", kept.Name, kept.ListenAddr)
}

// planReload sorts the pools of cfg and the running ones into a reloadPlan. A pool keeps its
// listener when its address is the same, or names the socket file it listens on by another path
// (through a symlinked directory, say). It looks at the socket files before anything is stopped,
// while each running pool's file is in place. s.mu must be held.
func (s *Server) planReload(cfg *Config) *reloadPlan {
	plan := &reloadPlan{closing: map[string]*poolRun{}, holders: map[string][]*poolRun{}}
	for _, pc := range cfg.Pools {
		if r := s.keeps(pc); r != nil {
			plan.keep = append(plan.keep, keptPool{r, pc})
			continue
		}
		plan.fresh = append(plan.fresh, pc)
		if old := s.running[pc.Name]; old != nil {
			plan.closing[pc.Name] = old
		}
	}
	for name, r := range s.running {
		if cfg.Pool(name) == nil {
			plan.closing[name] = r
		}
	}
	// The closing pools whose listener occupies a fresh pool's address: the one on its socket file
	// (by its path or another), or those on its TCP port on a host that may overlap its.
	for _, pc := range plan.fresh {
		for _, r := range plan.closing {
			if bindKey(r.p.cfg) == bindKey(pc) && hostsOverlap(r.p.cfg, pc) || r.p.socketAt(pc) {
				plan.holders[pc.Name] = append(plan.holders[pc.Name], r)
			}
		}
	}
	return plan
}

// keeps returns the running pool that keeps its listener for pc in a Reload, or nil: the pool of
// pc's name if it is of pc's kind and pc's listen address is its own, or names the socket file it
// listens on by another path. s.mu must be held.
func (s *Server) keeps(pc *PoolConfig) *poolRun {
	old := s.running[pc.Name]
	if old != nil && old.p.cfg.Redis == pc.Redis && (listenKey(old.p.cfg) == listenKey(pc) || old.p.socketAt(pc)) {
		return old
	}
	return nil
}

// keptListeners returns, for each TCP pool of cfg that keeps its listener in a Reload (see keeps),
// the address the listener is bound to. s.mu must be held.
func (s *Server) keptListeners(cfg *Config) map[*PoolConfig]net.Addr {
	kept := map[*PoolConfig]net.Addr{}
	if cfg == nil {
		return kept
	}
	for _, pc := range cfg.Pools {
		if pc == nil || pc.ListenNetwork != "tcp" {
			continue
		}
		if r := s.keeps(pc); r != nil {
			kept[pc] = r.p.ln.Addr()
		}
	}
	return kept
}

// bindFree opens the listeners of the fresh pools whose address no pool holds, while every pool
// serves, and returns them by pool name, with the fresh pools whose address a closing pool holds.
// On an error it closes what it opened. s.mu must be held.
func (s *Server) bindFree(plan *reloadPlan) (opened map[string]*pool, held []*PoolConfig, err error) {
	opened = map[string]*pool{}
	for _, pc := range plan.fresh {
		if len(plan.holders[pc.Name]) > 0 {
			held = append(held, pc)
			continue
		}
		p, err := s.openPool(pc)
		if err != nil {
			closeListeners(opened)
			return nil, nil, plan.explainBind(pc, err)
		}
		opened[pc.Name] = p
	}
	return opened, held, nil
}

// bindHeld stops the closing pools that hold the addresses of the held pools and opens the held
// pools' listeners, adding them to opened. It returns the pools it stopped; on an error it closes
// every listener in opened, and the caller restarts the stopped pools. s.mu must be held.
func (s *Server) bindHeld(plan *reloadPlan, held []*PoolConfig, opened map[string]*pool) (stopped map[*poolRun]bool, err error) {
	stopped = map[*poolRun]bool{}
	for _, pc := range held {
		for _, r := range plan.holders[pc.Name] {
			if !stopped[r] {
				stopped[r] = true
				r.cancel()
				<-r.done
			}
		}
	}
	for _, pc := range held {
		p, err := s.openPool(pc)
		if err != nil {
			closeListeners(opened)
			return stopped, plan.explainBind(pc, err)
		}
		opened[pc.Name] = p
	}
	return stopped, nil
}

func closeListeners(opened map[string]*pool) {
	for _, p := range opened {
		p.closeListener()
	}
}

// commitReload makes cfg the served configuration once every listener of plan is open: it closes
// the closing pools (but those bindHeld stopped already), swaps the kept pools' configurations and
// starts the fresh pools. Nothing in it can fail. s.mu must be held.
func (s *Server) commitReload(cfg *Config, plan *reloadPlan, opened map[string]*pool, stopped map[*poolRun]bool) {
	for name, r := range plan.closing {
		if !stopped[r] {
			r.cancel()
			<-r.done
		}
		delete(s.running, name)
	}
	for _, k := range plan.keep {
		k.r.p.swap(k.r.ctx, k.pc) // the old servers drain without s.mu held
	}
	for _, pc := range plan.fresh {
		p := opened[pc.Name]
		if old := plan.closing[pc.Name]; old != nil {
			p.st.carry(old.p.state()) // a pool that moves keeps its servers' ejections and counters
		}
		s.startPool(p)
	}
	s.order = s.order[:0]
	for _, pc := range cfg.Pools {
		s.order = append(s.order, pc.Name)
	}
	s.cfg = cfg
	s.opts.log.Info("configuration reloaded", zap.Int("pools", len(cfg.Pools)))
}

// restart starts the stopped pools again, each on its address with the configuration it served and
// its servers' state; a pool whose address cannot be bound again no longer serves, and the error
// says so. s.mu must be held.
func (s *Server) restart(stopped map[*poolRun]bool) error {
	var errs []error
	for r := range stopped {
		pc := r.p.currentCfg()
		p, err := s.openPool(pc)
		if err != nil {
			delete(s.running, pc.Name)
			errs = append(errs, fmt.Errorf("twemproxy: reload: pool %s stopped and could not be restarted: %w", pc.Name, err))
			continue
		}
		p.st.carry(r.p.state())
		s.startPool(p)
	}
	return errors.Join(errs...)
}

// openPool makes the pool for pc and opens its listener.
func (s *Server) openPool(pc *PoolConfig) (*pool, error) {
	if s.listenHook != nil {
		if err := s.listenHook(pc.ListenNetwork, pc.ListenAddr); err != nil {
			return nil, fmt.Errorf("pool %s: listen: %w", pc.Name, err)
		}
	}
	p := newPool(pc, s.protoFor(pc), s.opts, &s.conns)
	if err := p.listen(); err != nil {
		return nil, err
	}
	return p, nil
}

// keptPool is a running pool that a Reload keeps, with its new configuration.
type keptPool struct {
	r  *poolRun
	pc *PoolConfig
}

// chmodKept gives the unix sockets of the kept pools their new permission; on an error it restores
// the modes it changed and returns the error. restore restores them, for a reload that fails later.
func chmodKept(keep []keptPool) (restore func(), err error) {
	type mode struct {
		path string
		mode os.FileMode
	}
	var changed []mode
	restore = func() {
		for _, m := range changed {
			_ = os.Chmod(m.path, m.mode)
		}
	}
	for _, k := range keep {
		path := k.r.p.sockPath
		if k.r.p.sock == nil || k.pc.ListenPerm == 0 || k.pc.ListenPerm == k.r.p.cfg.ListenPerm {
			continue
		}
		fi, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) || err == nil && !os.SameFile(fi, k.r.p.sock) {
			// Removed under the pool, or replaced by another's file: not the pool's to chmod, and
			// nothing of this reload's to fail on.
			continue
		}
		if err == nil && fi.Mode().Perm() == k.pc.ListenPerm {
			continue
		}
		if err == nil {
			err = os.Chmod(path, k.pc.ListenPerm)
		}
		if err != nil {
			restore()
			return nil, fmt.Errorf("pool %s: listen: %w", k.pc.Name, err)
		}
		changed = append(changed, mode{path, fi.Mode().Perm()})
	}
	return restore, nil
}

// bindKey identifies what a pool's listener occupies: its unix socket's path, or its TCP port, on
// which a listener on another host may conflict with it (see hostsOverlap).
func bindKey(pc *PoolConfig) string {
	if pc.ListenNetwork == "tcp" {
		if _, port, ok := tcpHostPort(pc.ListenAddr); ok {
			return "tcp :" + port
		}
	}
	return listenKey(pc)
}

// tcpHostPort splits a TCP listen address into its host and its port; a port that is a number is
// written without leading zeros, as the port Go binds ("127.0.0.1:022121" is port 22121).
func tcpHostPort(addr string) (host, port string, ok bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", false
	}
	if n, err := strconv.ParseUint(port, 10, 16); err == nil {
		port = strconv.FormatUint(n, 10)
	}
	return host, port, true
}

// hostsOverlap reports whether the listeners of a and b, which have one bindKey, may conflict: a
// unix socket path always does; TCP hosts do when they are equal, when either is a name, whose
// address is known only when it is bound, or when either is a wildcard beside an address of its
// family, or :: (or an empty host) beside any host (see listenTCP). Other IP addresses on one port
// can both be bound, 0.0.0.0 beside an IPv6 address too, and so can any hosts on port 0 (see
// anyPort).
func hostsOverlap(a, b *PoolConfig) bool {
	if a.ListenNetwork != "tcp" {
		return true
	}
	if anyPort(a) {
		return false
	}
	ha, ia, okA := listenIP(a)
	hb, ib, okB := listenIP(b)
	if ha == hb || !okA || !okB || ia == ib {
		return true
	}
	wa, wb := ia.IsUnspecified(), ib.IsUnspecified()
	return (wa || wb) && (ia.Is4() == ib.Is4() || wa && ia.Is6() || wb && ib.Is6())
}

// hostsCollide reports whether the listeners of a and b, which have one bindKey, certainly
// conflict: a unix socket path does; TCP hosts do when both are IP addresses and equal, when a
// wildcard is beside an address of its family (0.0.0.0 beside 127.0.0.2 or ::ffff:127.0.0.2, ::
// beside ::1), and on Linux when :: (or an empty host) is beside any other host, 0.0.0.0 and a name
// too, whatever it resolves to: Go listens on :: for IPv4 and IPv6 at once where the system lets
// it (see listenTCP), and Linux does; elsewhere :: is taken for an IPv6 wildcard only. 0.0.0.0
// listens on IPv4 only: it never collides with an IPv6 address, and with a name only if the name
// resolves to an IPv4 address, which is known when it is bound. Hosts on port 0 never collide (see
// anyPort).
func hostsCollide(a, b *PoolConfig) bool {
	if a.ListenNetwork != "tcp" {
		return true
	}
	if anyPort(a) {
		return false
	}
	_, ia, okA := listenIP(a)
	_, ib, okB := listenIP(b)
	wa, wb := okA && ia.IsUnspecified(), okB && ib.IsUnspecified()
	switch {
	case okA && okB && ia == ib:
		return true
	case !wa && !wb:
		return false // no wildcard
	case okA && okB && ia.Is4() == ib.Is4():
		return true
	}
	return (wa && ia.Is6() || wb && ib.Is6()) && runtime.GOOS == "linux"
}

// collisionWhy explains, for TCP listen addresses a and b that hostsCollide says collide, what the
// wildcard host of either takes of the port (that of ::, which takes more, if both are wildcards),
// as " (...)"; it is "" when neither host is a wildcard.
func collisionWhy(a, b *PoolConfig) string {
	ha, ia, okA := listenIP(a)
	hb, ib, okB := listenIP(b)
	wa, wb := okA && ia.IsUnspecified(), okB && ib.IsUnspecified()
	if !wa || wb && ib.Is6() {
		ha, ia, wa = hb, ib, wb
	}
	what := fmt.Sprintf("the wildcard host %q", ha)
	if ha == "" {
		what = "an empty host"
	}
	switch {
	case !wa:
		return ""
	case ia.Is4():
		return " (" + what + " takes the port on every IPv4 address)"
	case runtime.GOOS == "linux":
		return " (" + what + " takes the port on every address, IPv4 and IPv6)"
	}
	return " (" + what + " takes the port on every IPv6 address)"
}

// anyPort reports whether pc's TCP listen port is 0: the system picks a free port for each such
// listener (only a Config built in Go can ask for it), so it never conflicts with another.
func anyPort(pc *PoolConfig) bool {
	_, port, ok := tcpHostPort(pc.ListenAddr)
	return ok && port == "0"
}

// listenIP returns the host of pc's TCP listen address and, if the host is an IP address, the
// address (unmapped from IPv6, so that ::ffff:127.0.0.1 is 127.0.0.1), with ok true. An empty
// host is the IPv6 wildcard, which Go listens on for an empty host.
func listenIP(pc *PoolConfig) (host string, ip netip.Addr, ok bool) {
	host, _, _ = net.SplitHostPort(pc.ListenAddr)
	if host == "" {
		return host, netip.IPv6Unspecified(), true
	}
	ip, err := netip.ParseAddr(host)
	return host, ip.Unmap(), err == nil
}

// listenKey identifies the socket a pool listens on: a pool whose key is unchanged keeps its listener
// (a change of the unix socket's permission alone is applied to the file). A TCP port is compared
// by number, a unix socket's path once cleaned.
func listenKey(pc *PoolConfig) string {
	addr := pc.ListenAddr
	switch pc.ListenNetwork {
	case "unix":
		addr = filepath.Clean(addr)
	case "tcp":
		if host, port, ok := tcpHostPort(addr); ok {
			addr = net.JoinHostPort(host, port)
		}
	}
	return pc.ListenNetwork + " " + addr
}
