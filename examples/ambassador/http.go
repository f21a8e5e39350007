package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
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

// proxyFlags are the flags the http and tcp subcommands share.
type proxyFlags struct {
	listen, backends, balancer, admin, health string
	retries                                   int
	connectTimeout, idleTimeout               time.Duration
	verbose                                   bool
}

func (f *proxyFlags) register(fs *flag.FlagSet, httpMode bool) {
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8080", "address to listen on")
	if httpMode {
		fs.StringVar(&f.backends, "backends", "", "comma-separated endpoints: URL or HOST:PORT, optionally *WEIGHT (required)")
		fs.StringVar(&f.health, "health", "", "HTTP health-check path (default: TCP connect checks)")
	} else {
		fs.StringVar(&f.backends, "backends", "", "comma-separated endpoints HOST:PORT, optionally *WEIGHT (required)")
	}
	fs.StringVar(&f.balancer, "balancer", "rr", "balancer: rr, p2c, ring or maglev")
	fs.StringVar(&f.admin, "admin", "", "hook server address (probes, /metrics, /statusz); empty: none")
	fs.IntVar(&f.retries, "retries", 2, "retries on another endpoint (idempotent HTTP requests, TCP dials)")
	fs.DurationVar(&f.connectTimeout, "connect-timeout", 5*time.Second, "endpoint dial timeout")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 10*time.Minute, "idle connection timeout")
	fs.BoolVar(&f.verbose, "v", false, "log to stderr")
}

// endpoints parses -backends, accepting http:// URLs as well as host:port.
func (f *proxyFlags) endpoints() ([]ambassador.Endpoint, error) {
	if f.backends == "" {
		return nil, cmdline.Usagef("-backends is required")
	}
	items, err := cmdline.List("backends", f.backends)
	if err != nil {
		return nil, err
	}
	parts := make([]string, 0, len(items))
	for _, p := range items {
		p = strings.TrimSpace(p)
		if strings.Contains(p, "://") {
			u, err := url.Parse(p)
			if err != nil {
				return nil, cmdline.Usagef("-backends: %w", err)
			}
			if u.Scheme != "http" {
				return nil, cmdline.Usagef("-backends: %s: only http:// endpoints are supported", p)
			}
			host := u.Host
			if u.Port() == "" {
				host += ":80"
			}
			p = host
		}
		parts = append(parts, p)
	}
	eps, err := ambassador.ParseEndpoints(strings.Join(parts, ","))
	if err != nil {
		return nil, cmdline.Usagef("-backends %q: %w", f.backends, err)
	}
	return eps, nil
}

// check refuses the values of the shared flags that the proxy cannot use, or (a negative timeout
// reads as none) would read otherwise than they say.
func (f *proxyFlags) check() error {
	for _, a := range []struct{ flag, addr string }{{"-listen", f.listen}, {"-admin", f.admin}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil && (a.addr != "" || a.flag == "-listen") {
			return cmdline.Usagef("%s %q: want HOST:PORT", a.flag, a.addr)
		}
	}
	switch {
	case f.retries < 0:
		return cmdline.Usagef("-retries %d: want 0 or more", f.retries)
	case f.connectTimeout < 0:
		return cmdline.Usagef("-connect-timeout %v: want 0 (the system's) or more", f.connectTimeout)
	case f.idleTimeout < 0:
		return cmdline.Usagef("-idle-timeout %v: want 0 (none) or more", f.idleTimeout)
	case f.health != "" && !strings.HasPrefix(f.health, "/"):
		return cmdline.Usagef("-health %q: want a path starting with /", f.health)
	}
	if _, ok := ambassador.Balancers[f.balancer]; !ok {
		return cmdline.Usagef("-balancer %q: want rr, p2c, ring or maglev", f.balancer)
	}
	return nil
}

func (f *proxyFlags) options(log *zap.Logger, reg prometheus.Registerer) []ambassador.Option {
	opts := []ambassador.Option{
		ambassador.WithLogger(log), ambassador.WithRegisterer(reg), ambassador.WithBalancer(ambassador.Balancers[f.balancer]),
		ambassador.WithRetries(f.retries), ambassador.WithConnectTimeout(f.connectTimeout),
		ambassador.WithIdleTimeout(f.idleTimeout),
	}
	if f.health != "" {
		opts = append(opts, ambassador.WithHealthCheck(ambassador.HealthCheck{
			Check: ambassador.HTTPCheck(f.health, 0, nil), Interval: 2 * time.Second}))
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
}

// serve runs p until ctx ends or SIGINT/SIGTERM, behind a hook server when -admin is set.
func serve(ctx context.Context, f *proxyFlags, p proxy, cluster *ambassador.Cluster, reg *prometheus.Registry, stdout io.Writer) error {
	if f.admin == "" {
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		go func() {
			select {
			case <-p.Ready():
				fmt.Fprintln(stdout, "ambassador: listening on", f.listen)
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
	return runProxy(ctx, "ambassador http", true, args, stdout, func(fs *flag.FlagSet) func() (ambassador.Option, error) {
		perTry := fs.Duration("per-try-timeout", 15*time.Second, "per-try timeout until response headers (0: none)")
		return func() (ambassador.Option, error) {
			if *perTry < 0 {
				return nil, cmdline.Usagef("-per-try-timeout %v: want 0 (none) or more", *perTry)
			}
			return ambassador.WithPerTryTimeout(*perTry), nil
		}
	}, func(listen string, c *ambassador.Cluster, opts ...ambassador.Option) (proxy, error) {
		return ambassador.NewHTTPProxy(listen, c, opts...)
	})
}

// runProxy is the http and tcp subcommands: the shared flags plus the one extra adds (its option is
// read, and checked, after parsing), a cluster over the -backends, and the proxy newProxy makes,
// served until ctx ends or SIGTERM. Every flag is checked before anything is made.
func runProxy(ctx context.Context, name string, httpMode bool, args []string, stdout io.Writer,
	extra func(*flag.FlagSet) func() (ambassador.Option, error),
	newProxy func(listen string, c *ambassador.Cluster, opts ...ambassador.Option) (proxy, error)) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var f proxyFlags
	f.register(fs, httpMode)
	extraOption := extra(fs)
	if err := cmdline.ParseFlags(fs, args); err != nil {
		return err
	}
	eps, err := f.endpoints()
	if err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	xopt, err := extraOption()
	if err != nil {
		return err
	}
	tuneGC()
	log := newLogger(f.verbose)
	reg := prometheus.NewRegistry()
	opts := append(f.options(log, reg), xopt)
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
