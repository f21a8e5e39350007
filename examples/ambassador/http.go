package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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
		return nil, errors.New("-backends is required")
	}
	var parts []string
	for p := range strings.SplitSeq(f.backends, ",") {
		p = strings.TrimSpace(p)
		if strings.Contains(p, "://") {
			u, err := url.Parse(p)
			if err != nil {
				return nil, fmt.Errorf("-backends: %w", err)
			}
			if u.Scheme != "http" {
				return nil, fmt.Errorf("-backends: %s: only http:// endpoints are supported", p)
			}
			host := u.Host
			if u.Port() == "" {
				host += ":80"
			}
			p = host
		}
		parts = append(parts, p)
	}
	return ambassador.ParseEndpoints(strings.Join(parts, ","))
}

func (f *proxyFlags) options(log *zap.Logger, reg prometheus.Registerer) ([]ambassador.Option, error) {
	nb, ok := ambassador.Balancers[f.balancer]
	if !ok {
		return nil, fmt.Errorf("-balancer %q: want rr, p2c, ring or maglev", f.balancer)
	}
	opts := []ambassador.Option{
		ambassador.WithLogger(log), ambassador.WithRegisterer(reg), ambassador.WithBalancer(nb),
		ambassador.WithRetries(f.retries), ambassador.WithConnectTimeout(f.connectTimeout),
		ambassador.WithIdleTimeout(f.idleTimeout),
	}
	if f.health != "" {
		opts = append(opts, ambassador.WithHealthCheck(ambassador.HealthCheck{
			Check: ambassador.HTTPCheck(f.health, 0, nil), Interval: 2 * time.Second}))
	}
	return opts, nil
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
	return runProxy(ctx, "ambassador http", true, args, stdout, func(fs *flag.FlagSet) func() ambassador.Option {
		perTry := fs.Duration("per-try-timeout", 15*time.Second, "per-try timeout until response headers")
		return func() ambassador.Option { return ambassador.WithPerTryTimeout(*perTry) }
	}, func(listen string, c *ambassador.Cluster, opts ...ambassador.Option) (proxy, error) {
		return ambassador.NewHTTPProxy(listen, c, opts...)
	})
}

// runProxy is the http and tcp subcommands: the shared flags plus the one extra adds (its option is
// read after parsing), a cluster over the -backends, and the proxy newProxy makes, served until ctx
// ends or SIGTERM.
func runProxy(ctx context.Context, name string, httpMode bool, args []string, stdout io.Writer,
	extra func(*flag.FlagSet) func() ambassador.Option,
	newProxy func(listen string, c *ambassador.Cluster, opts ...ambassador.Option) (proxy, error)) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var f proxyFlags
	f.register(fs, httpMode)
	extraOption := extra(fs)
	if err := cmdline.Parse(fs, args); err != nil {
		return err
	}
	eps, err := f.endpoints()
	if err != nil {
		return err
	}
	tuneGC()
	log := newLogger(f.verbose)
	reg := prometheus.NewRegistry()
	opts, err := f.options(log, reg)
	if err != nil {
		return err
	}
	opts = append(opts, extraOption())
	cluster, err := ambassador.NewCluster(ambassador.NewStatic(eps...), opts...)
	if err != nil {
		return err
	}
	p, err := newProxy(f.listen, cluster, opts...)
	if err != nil {
		return err
	}
	return serve(ctx, &f, p, cluster, reg, stdout)
}
