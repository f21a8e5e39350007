package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/podblocks/podblocks/ambassador"
	"github.com/podblocks/podblocks/internal/cmdline"
	"github.com/podblocks/podblocks/lifecycle"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// minHealthInterval is the shortest -health-interval but 0 (no checks). Shorter ones check in a
// tight loop (at 1ns, thousands of connections a second to every backend) to find a dead backend
// at most 200ms sooner: at 100ms its three failed checks take 200ms, at 10 checks a second.
// Kubernetes' probes run at most once a second (periodSeconds is at least 1).
const minHealthInterval = 100 * time.Millisecond

// proxyFlags are the flags the http and tcp subcommands share.
type proxyFlags struct {
	listen, backends, balancer, admin, health string
	key                                       string // http only
	retries                                   int
	connectTimeout, idleTimeout               time.Duration
	healthInterval                            time.Duration // 0: no health checks
	verbose                                   bool
}

// keyUsage is -key's help: what ring and maglev hash, and why not the client IP by default.
const keyUsage = `what -balancer ring or maglev hashes, so that equal keys go to the same backend: path (the
request path, without the query, as haproxy's "balance uri"), client-ip, header:NAME (a request
header's value) or cookie:NAME. As a sidecar every request comes from 127.0.0.1, so client-ip
sends them all to one backend`

func (f *proxyFlags) register(fs *flag.FlagSet, httpMode bool) {
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8080", "address to listen on")
	if httpMode {
		fs.StringVar(&f.backends, "backends", "", "comma-separated endpoints: http://HOST[:PORT] or HOST:PORT, optionally *WEIGHT (1 to 65535) (required)")
		fs.StringVar(&f.health, "health", "", "HTTP health-check path, GET every -health-interval, 2xx is healthy (default: TCP connect checks)")
		fs.StringVar(&f.balancer, "balancer", "rr", "balancer: rr, p2c, ring or maglev (ring and maglev hash -key)")
		fs.StringVar(&f.key, "key", "path", keyUsage)
	} else {
		fs.StringVar(&f.backends, "backends", "", "comma-separated endpoints HOST:PORT, optionally *WEIGHT (1 to 65535) (required);\nchecked by a TCP connect every -health-interval")
		fs.StringVar(&f.balancer, "balancer", "rr", "balancer: rr, p2c, ring or maglev (ring and maglev hash the client's IP address:\nbehind a loopback -listen, one backend takes every connection)")
	}
	fs.StringVar(&f.admin, "admin", "", "hook server address (probes, /metrics, /statusz); empty: none")
	fs.IntVar(&f.retries, "retries", 2, "retries, on another endpoint when one can take them (idempotent HTTP requests, TCP dials)")
	fs.DurationVar(&f.connectTimeout, "connect-timeout", 5*time.Second, "endpoint dial timeout")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 10*time.Minute, "idle connection timeout")
	fs.DurationVar(&f.healthInterval, "health-interval", 2*time.Second,
		"time between two health checks of a backend, at least "+minHealthInterval.String()+"; one failing 3 in a row takes no traffic until it\npasses 2. 0 turns the checks off (a backend is then left out only when requests to it fail)")
	fs.BoolVar(&f.verbose, "v", false, "log to stderr")
}

// hashes reports whether the balancer hashes a key (ring and maglev do).
func (f *proxyFlags) hashes() bool { return f.balancer == "ring" || f.balancer == "maglev" }

// check refuses the values of the shared flags that the proxy cannot use, or (a negative timeout
// reads as none) would read otherwise than they say; fs parsed them.
func (f *proxyFlags) check(fs *flag.FlagSet) error {
	if err := cmdline.Addr("-listen", f.listen); err != nil {
		return err
	}
	if f.admin != "" {
		if err := cmdline.Addr("-admin", f.admin); err != nil {
			return err
		}
	}
	switch {
	case f.retries < 0:
		return cmdline.Usagef("-retries %d: want 0 or more", f.retries)
	case f.connectTimeout < 0:
		return cmdline.Usagef("-connect-timeout %v: want 0 (the system's) or more", f.connectTimeout)
	case f.idleTimeout < 0:
		return cmdline.Usagef("-idle-timeout %v: want 0 (none) or more", f.idleTimeout)
	case f.healthInterval != 0 && f.healthInterval < minHealthInterval:
		return cmdline.Usagef("-health-interval %v: want 0 (no health checks) or %v or more", f.healthInterval, minHealthInterval)
	case f.health != "" && f.healthInterval == 0:
		return cmdline.Usagef("-health %q with -health-interval 0: the checks are off, so the path would not be used", f.health)
	case f.health != "" && !strings.HasPrefix(f.health, "/"):
		return cmdline.Usagef("-health %q: want a path starting with /", f.health)
	}
	if _, ok := ambassador.Balancers[f.balancer]; !ok {
		return cmdline.Usagef("-balancer %q: want rr, p2c, ring or maglev", f.balancer)
	}
	if err := cmdline.OnlyWith(fs, f.hashes(), "-balancer ring or maglev", "key"); err != nil {
		return err
	}
	if fs.Lookup("key") != nil && f.hashes() {
		if _, err := keyFunc(f.key); err != nil {
			return err
		}
	}
	return nil
}

// keyFunc returns the ambassador.KeyFunc that spec, a -key value, names.
func keyFunc(spec string) (ambassador.KeyFunc, error) {
	switch spec {
	case "path":
		return ambassador.PathKey, nil
	case "client-ip":
		return ambassador.ClientIPKey, nil
	}
	kind, name, _ := strings.Cut(spec, ":")
	if (kind == "header" || kind == "cookie") && isToken(name) {
		if kind == "header" {
			return ambassador.HeaderKey(name), nil
		}
		return ambassador.CookieKey(name), nil
	}
	return nil, cmdline.Usagef("-key %q: want path, client-ip, header:NAME or cookie:NAME", spec)
}

// isToken reports whether s is a non-empty HTTP token (RFC 9110), as header and cookie names are.
func isToken(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
	})
}

// clientIPTrap returns a warning when the balancer hashes the client's IP address and -listen is a
// loopback address, whose every client is the one local address: the ring then sends all the
// traffic to one backend. The command still runs (the user asked for it), but says so.
func (f *proxyFlags) clientIPTrap(httpMode bool) string {
	if !f.hashes() || httpMode && f.key != "client-ip" {
		return ""
	}
	host, _, _ := net.SplitHostPort(f.listen)
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return ""
	}
	what := "-key client-ip"
	if !httpMode {
		what = "-balancer " + f.balancer + " (it hashes the client's IP address)"
	}
	return fmt.Sprintf("%s with the loopback -listen %s: every client is this host, so one backend gets all the traffic", what, f.listen)
}

func (f *proxyFlags) options(log *zap.Logger, reg prometheus.Registerer) []ambassador.Option {
	opts := []ambassador.Option{
		ambassador.WithLogger(log), ambassador.WithRegisterer(reg), ambassador.WithBalancer(ambassador.Balancers[f.balancer]),
		ambassador.WithRetries(f.retries), ambassador.WithConnectTimeout(f.connectTimeout),
		ambassador.WithIdleTimeout(f.idleTimeout),
	}
	// Every backend is checked every -health-interval (unless 0): with -health by GETting that path,
	// else (and always for tcp) by opening a TCP connection. A backend failing 3 checks in a row
	// takes no traffic until it passes 2.
	if f.healthInterval > 0 {
		check := ambassador.TCPCheck()
		if f.health != "" {
			check = ambassador.HTTPCheck(f.health, 0, nil)
		}
		opts = append(opts, ambassador.WithHealthCheck(ambassador.HealthCheck{Check: check, Interval: f.healthInterval}))
	}
	if f.key != "" && f.hashes() {
		key, _ := keyFunc(f.key) // check refused what it cannot read
		opts = append(opts, ambassador.WithKey(key))
	}
	return opts
}

// tuneGC raises the GC target to 400% unless GOGC is set: a proxy's live heap is small and its
// garbage per request steady, so the default 100% collects far more often than it needs to.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
}

// warn tells the user msg: in the log with -v, else as a line on stderr, which the command
// otherwise leaves to errors.
func warn(log *zap.Logger, verbose bool, msg string) {
	if verbose {
		log.Warn(msg)
		return
	}
	fmt.Fprintln(os.Stderr, "ambassador: warning:", msg)
}

func newLogger(verbose bool) *zap.Logger {
	if !verbose {
		return zap.NewNop()
	}
	l, err := zap.NewProduction()
	if err != nil {
		return zap.NewNop()
	}
	return l
}

// proxy is what the http and tcp subcommands run.
type proxy interface {
	Run(ctx context.Context) error
	Ready() <-chan struct{}
	Statusz() (string, []string, [][]string)
	Addr() net.Addr // the address it listens on, once ready
}

// serve runs p until ctx ends or SIGINT/SIGTERM, behind a hook server when -admin is set.
func serve(ctx context.Context, f *proxyFlags, p proxy, cluster *ambassador.Cluster, reg *prometheus.Registry, stdout io.Writer) error {
	if f.admin == "" {
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		go func() {
			select {
			case <-p.Ready():
				fmt.Fprintln(stdout, "ambassador: listening on", p.Addr()) // the port -listen :0 got
			case <-ctx.Done():
			}
		}()
		return p.Run(ctx)
	}
	app, err := lifecycle.NewApp(lifecycle.WithAddr(f.admin), lifecycle.WithGatherer(reg))
	if err != nil {
		return err
	}
	app.Hooks().AddStatus(p)
	app.Hooks().AddStatus(cluster)
	if err := app.Add("proxy", p); err != nil {
		return err
	}
	return app.Run(ctx)
}

func runHTTP(args []string) error { return runHTTPContext(context.Background(), args, os.Stdout) }

func runHTTPContext(ctx context.Context, args []string, stdout io.Writer) error {
	return runProxy(ctx, "ambassador http", true, args, stdout, func(fs *flag.FlagSet) func() ([]ambassador.Option, error) {
		perTry := fs.Duration("per-try-timeout", 15*time.Second, "per-try timeout until response headers (0: none)")
		bodyIdle := fs.Duration("body-idle-timeout", 60*time.Second, "longest wait for more of a backend's response body once its headers are in: a backend\n"+
			"silent that long mid-body has the answer cut (a client slow to read does not count). Server-sent\n"+
			"events and long polls need more than their longest gap (0: none)")
		return func() ([]ambassador.Option, error) {
			if *perTry < 0 {
				return nil, cmdline.Usagef("-per-try-timeout %v: want 0 (none) or more", *perTry)
			}
			if *bodyIdle < 0 {
				return nil, cmdline.Usagef("-body-idle-timeout %v: want 0 (none) or more", *bodyIdle)
			}
			return []ambassador.Option{ambassador.WithPerTryTimeout(*perTry), ambassador.WithBodyIdleTimeout(*bodyIdle)}, nil
		}
	}, func(listen string, c *ambassador.Cluster, opts ...ambassador.Option) (proxy, error) {
		return ambassador.NewHTTPProxy(listen, c, opts...)
	})
}

// runProxy is the http and tcp subcommands: the shared flags plus the ones extra adds (their options
// are read, and checked, after parsing), a cluster over the -backends, and the proxy newProxy makes,
// served until ctx ends or SIGTERM. Every flag is checked before anything is made.
func runProxy(ctx context.Context, name string, httpMode bool, args []string, stdout io.Writer,
	extra func(*flag.FlagSet) func() ([]ambassador.Option, error),
	newProxy func(listen string, c *ambassador.Cluster, opts ...ambassador.Option) (proxy, error)) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var f proxyFlags
	f.register(fs, httpMode)
	extraOption := extra(fs)
	if err := cmdline.ParseFlags(fs, args); err != nil {
		return err
	}
	eps, err := f.endpoints(httpMode)
	if err != nil {
		return err
	}
	if err := f.check(fs); err != nil {
		return err
	}
	xopts, err := extraOption()
	if err != nil {
		return err
	}
	tuneGC()
	log := newLogger(f.verbose)
	if trap := f.clientIPTrap(httpMode); trap != "" {
		warn(log, f.verbose, trap)
	}
	reg := prometheus.NewRegistry()
	opts := append(f.options(log, reg), xopts...)
	// The constructors start nothing, and what they refuse came from the flags.
	cluster, err := ambassador.NewCluster(ambassador.NewStatic(eps...), opts...)
	if err != nil {
		return usageIfConfig(err)
	}
	p, err := newProxy(f.listen, cluster, opts...)
	if err != nil {
		return usageIfConfig(err)
	}
	return serve(ctx, &f, p, cluster, reg, stdout)
}

// usageIfConfig makes err a usage error when it is an *ambassador.ConfigError.
func usageIfConfig(err error) error {
	if ce := (*ambassador.ConfigError)(nil); errors.As(err, &ce) {
		return cmdline.Usagef("%w", err)
	}
	return err
}
