// Command health-adapter gives a container without health endpoints Kubernetes-style probes: it
// runs checks against the application next to it and serves them as /livez, /readyz and
// /startupz on the lifecycle hook server (with /metrics and /statusz).
//
//	health-adapter -admin :8081 -readyz 'exec=mysql -h 127.0.0.1 -e "SELECT 1"' -livez tcp=127.0.0.1:3306
//	health-adapter -admin :8081 -config checks.yml
//
// A check flag is KIND=TARGET with KIND one of exec (a shell command), tcp (host:port), http (a
// URL), grpc (host:port[/service]) or redis (host:port); it may be repeated. -config reads the YAML
// described by health.Config.
//
// exec=COMMAND runs /bin/sh -c COMMAND, so it needs an image with a shell (and the command's
// program): the project's images are FROM scratch and have neither, and there exec= is refused at
// start rather than failing every probe. In such an image use the tcp, http, grpc or redis checks,
// or a -config check with exec: [PROGRAM, ARG...], which runs the program without a shell. -admin binds 127.0.0.1:8081 by default: use -admin :8081 so that the
// kubelet can reach it. SIGTERM and SIGINT stop it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podblocks/podblocks/adapter/health"
	"github.com/podblocks/podblocks/internal/cmdline"
	"github.com/podblocks/podblocks/lifecycle"
)

func main() {
	lifecycle.RunAsInit() // as PID 1: reap what the children leave, pass signals on
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cmdline.Exit("health-adapter", run(ctx, os.Args[1:], os.Stderr, nil))
}

// shell runs exec= checks (a variable for the tests).
var shell = "/bin/sh"

type checkFlags struct {
	probe lifecycle.Probe
	specs *[]health.Spec
}

func (c checkFlags) String() string { return "" }

func (c checkFlags) Set(v string) error {
	kind, target, ok := strings.Cut(v, "=")
	if !ok || target == "" {
		return fmt.Errorf("%q is not KIND=TARGET", v)
	}
	var chk health.Checker
	addr := target // of a tcp, grpc or redis check
	switch kind {
	case "exec":
		if _, err := os.Stat(shell); err != nil {
			return fmt.Errorf("exec= runs %s -c, which this image lacks: use a -config check with exec: [PROGRAM, ARG...] (no shell)", shell)
		}
		chk = &health.Exec{Command: []string{shell, "-c", target}}
	case "tcp":
		chk = &health.TCP{Addr: target}
	case "http":
		if u, err := url.Parse(target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%q: want an http or https URL", target)
		}
		chk = &health.HTTP{URL: target}
	case "grpc":
		var svc string
		addr, svc, _ = strings.Cut(target, "/")
		chk = &health.GRPC{Addr: addr, Service: svc}
	case "redis":
		chk = &health.RedisPing{Addr: target}
	default:
		return fmt.Errorf("unknown check kind %q (exec, tcp, http, grpc, redis)", kind)
	}
	if kind != "exec" && kind != "http" {
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			return fmt.Errorf("%q: want %s=HOST:PORT", v, kind)
		}
	}
	name := fmt.Sprintf("%s-%d", kind, len(*c.specs))
	*c.specs = append(*c.specs, health.Spec{Name: name, Probe: c.probe, Checker: chk})
	return nil
}

// run serves until ctx ends. started, if not nil, receives the hook server's address once it
// listens (for tests).
func run(ctx context.Context, args []string, stderr io.Writer, started chan<- string) error {
	var specs []health.Spec
	fs := flag.NewFlagSet("health-adapter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", lifecycle.DefaultAdminAddr, "hook server address (/livez, /readyz, /metrics, /statusz)")
	config := fs.String("config", "", "YAML file of checks (see health.Config)")
	interval := fs.Duration("interval", 5*time.Second, "run flag checks in the background this often (0: on every probe)")
	timeout := fs.Duration("timeout", 2*time.Second, "timeout of one flag check")
	failures := fs.Int("failure-threshold", 3, "consecutive failures before a flag check is unhealthy")
	successes := fs.Int("success-threshold", 1, "consecutive successes before it is healthy again")
	fs.Var(checkFlags{lifecycle.Livez, &specs}, "livez", "liveness check KIND=TARGET (repeatable)")
	fs.Var(checkFlags{lifecycle.Readyz, &specs}, "readyz", "readiness check KIND=TARGET (repeatable)")
	fs.Var(checkFlags{lifecycle.Startupz, &specs}, "startupz", "startup check KIND=TARGET (repeatable)")
	if err := cmdline.ParseFlags(fs, args); err != nil {
		return err
	}
	if len(specs) == 0 && *config == "" {
		return cmdline.Usagef("no checks: give -livez, -readyz, -startupz or -config")
	}
	if err := cmdline.OnlyWith(fs, len(specs) > 0, "-livez, -readyz or -startupz (a -config check sets its own)",
		"interval", "timeout", "failure-threshold", "success-threshold"); err != nil {
		return err
	}
	if err := cmdline.Addr("-admin", *admin); err != nil {
		return err
	}
	switch { // 0 is allowed: health.Spec documents what each zero means
	case *interval < 0:
		return cmdline.Usagef("-interval %v: want 0 or more", *interval)
	case *timeout < 0:
		return cmdline.Usagef("-timeout %v: want 0 or more", *timeout)
	case *failures < 0:
		return cmdline.Usagef("-failure-threshold %d: want 0 or more", *failures)
	case *successes < 0:
		return cmdline.Usagef("-success-threshold %d: want 0 or more", *successes)
	}
	for i := range specs {
		specs[i].Interval, specs[i].Timeout = *interval, *timeout
		specs[i].FailureThreshold, specs[i].SuccessThreshold = *failures, *successes
	}
	if *config != "" {
		more, err := health.LoadConfig(*config) // a config with no checks is an error
		if err != nil {
			return err
		}
		specs = append(specs, more...)
	}
	log, err := zap.NewProduction()
	if err != nil {
		return err
	}
	defer log.Sync()
	reg := prometheus.NewRegistry()
	a, err := health.New(specs, health.WithLogger(log.Named("health")), health.WithRegisterer(reg))
	if err != nil {
		return err
	}
	defer a.Close()
	srv, err := lifecycle.NewServer(lifecycle.WithAddr(*admin), lifecycle.WithLogger(log), lifecycle.WithRegisterer(reg),
		lifecycle.WithGatherer(reg))
	if err != nil {
		return err
	}
	if err := a.Register(srv); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
		srv.SetState(lifecycle.StateReady)
		log.Info("serving probes", zap.String("addr", srv.Addr()), zap.Int("checks", len(specs)))
		if started != nil {
			started <- srv.Addr()
		}
	case err := <-done:
		return err
	}
	return <-done
}
