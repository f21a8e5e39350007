// Command lifecycle is a container-ready HTTP service built on podblocks' lifecycle package: the
// single-container management interface in one binary.
//
//	lifecycle -listen :8080 -admin 127.0.0.1:8081 -propagation 5s -grace 30s
//
// GET / answers 200; GET /work?ms=N answers 200 after N ms of work. The hook server on -admin serves
// /livez, /readyz, /healthz, /startupz, /metrics, /configz, /logz, /statusz, POST /prestop and POST
// /quitquitquit. On SIGTERM it drains (not ready, keep serving for -propagation, shut down within
// -grace) and exits 0; a second SIGTERM stops at once.
//
// Every flag can also be set by an environment variable: LISTEN, ADMIN, PROPAGATION, GRACE,
// SHED_LIMIT, LOG_LEVEL, PPROF (true or false, as strconv.ParseBool reads them: 1 is true); a value
// it cannot read is a usage error, as the flag's would be. The process' priority class comes from
// POD_PRIORITY (critical, default, sheddable or an integer); the downward API cannot expose
// spec.priority, so set it from a label, e.g. fieldRef metadata.labels['podblocks.io/priority'].
// A POD_PRIORITY it cannot read is a usage error too.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podblocks/podblocks/internal/cmdline"
	"github.com/podblocks/podblocks/lifecycle"
)

func main() {
	lifecycle.RunAsInit()
	cmdline.Exit("lifecycle", run(os.Args[1:], os.Getenv))
}

type config struct {
	Listen      string        `json:"listen"`
	Admin       string        `json:"admin"`
	Propagation time.Duration `json:"propagation"`
	Grace       time.Duration `json:"grace"`
	ShedLimit   int           `json:"shed_limit"`
	LogLevel    string        `json:"log_level"`
	Pprof       bool          `json:"pprof"`
	MaxWork     time.Duration `json:"max_work"`
}

func parse(args []string, getenv func(string) string) (config, error) {
	fs := flag.NewFlagSet("lifecycle", flag.ContinueOnError)
	var c config
	fs.StringVar(&c.Listen, "listen", ":8080", "address of the service (env LISTEN)")
	fs.StringVar(&c.Admin, "admin", lifecycle.DefaultAdminAddr, "address of the hook server (probes, metrics, hooks) (env ADMIN)")
	fs.DurationVar(&c.Propagation, "propagation", lifecycle.DefaultPropagationDelay, "how long to keep serving after turning not ready (env PROPAGATION)")
	fs.DurationVar(&c.Grace, "grace", lifecycle.DefaultGracePeriod, "termination grace period (match terminationGracePeriodSeconds) (env GRACE)")
	fs.IntVar(&c.ShedLimit, "shed-limit", 256, "concurrent requests admitted; lower priority classes are shed first (env SHED_LIMIT)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "initial log level: debug, info, warn, error, dpanic, panic or fatal (change it at runtime with PUT /logz) (env LOG_LEVEL)")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve /debug/pprof/ on the hook server (env PPROF: true or false)")
	fs.DurationVar(&c.MaxWork, "max-work", time.Minute, "the longest /work?ms= accepted")
	if err := cmdline.ParseFlags(fs, args); err != nil {
		return c, err
	}
	// A variable stands for its flag when the flag is not given, and one the command cannot read is a
	// usage error, as the flag's value would be; a flag given makes its variable irrelevant.
	given := cmdline.Given(fs)
	for _, v := range []struct{ env, flag, want string }{
		{"LISTEN", "listen", "host:port"}, {"ADMIN", "admin", "host:port"},
		{"PROPAGATION", "propagation", "a duration such as 5s"}, {"GRACE", "grace", "a duration such as 30s"},
		{"SHED_LIMIT", "shed-limit", "an integer"}, {"LOG_LEVEL", "log-level", "a log level"},
		{"PPROF", "pprof", "true or false"},
	} {
		if val := getenv(v.env); val != "" && !given[v.flag] {
			if err := fs.Set(v.flag, val); err != nil {
				return c, cmdline.Usagef("%s %q: want %s", v.env, val, v.want)
			}
		}
	}
	for _, a := range []struct{ flag, addr string }{{"-listen", c.Listen}, {"-admin", c.Admin}} {
		if err := cmdline.Addr(a.flag, a.addr); err != nil {
			return c, err
		}
	}
	switch margin := lifecycle.DefaultSafetyMargin; {
	case c.Propagation < 0:
		return c, cmdline.Usagef("-propagation %v: want 0 or more", c.Propagation)
	case c.Propagation+margin >= c.Grace:
		return c, cmdline.Usagef("-grace %v: want more than -propagation %v plus the %v safety margin", c.Grace, c.Propagation, margin)
	case c.ShedLimit < 1:
		return c, cmdline.Usagef("-shed-limit %d: want 1 or more", c.ShedLimit)
	case c.MaxWork < 0:
		return c, cmdline.Usagef("-max-work %v: want 0 or more", c.MaxWork)
	}
	if _, err := zap.ParseAtomicLevel(c.LogLevel); err != nil || c.LogLevel == "" {
		return c, cmdline.Usagef("-log-level %q: want debug, info, warn, error, dpanic, panic or fatal", c.LogLevel)
	}
	return c, nil
}

func run(args []string, getenv func(string) string) error {
	cfg, err := parse(args, getenv)
	if err != nil {
		return err
	}
	priority, err := lifecycle.ProcessPriority(getenv)
	if err != nil {
		return cmdline.Usagef("POD_PRIORITY %q: want critical, default, sheddable or an integer", getenv("POD_PRIORITY"))
	}
	level, err := zap.ParseAtomicLevel(cfg.LogLevel)
	if err != nil {
		return err // parse checked it
	}
	zc := zap.NewProductionConfig()
	zc.Level = level
	log, err := zc.Build()
	if err != nil {
		return err
	}
	defer log.Sync()

	reg := prometheus.NewRegistry()
	app, err := lifecycle.NewApp(
		lifecycle.WithAddr(cfg.Admin),
		lifecycle.WithLogger(log),
		lifecycle.WithRegisterer(reg),
		lifecycle.WithGatherer(reg),
		lifecycle.WithLevel(level),
		lifecycle.WithPprof(cfg.Pprof),
		lifecycle.WithPropagationDelay(cfg.Propagation),
		lifecycle.WithGracePeriod(cfg.Grace),
	)
	if err != nil {
		return err
	}
	shedder, err := lifecycle.NewShedder(cfg.ShedLimit, lifecycle.WithShedRegisterer(reg))
	if err != nil {
		return err
	}
	hooks := app.Hooks()
	hooks.AddConfig("lifecycle", &cfg)
	hooks.SetPriority(priority.String())

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv, err := lifecycle.NewHTTPServer(&http.Server{
		Handler:        shedder.Middleware(handler(cfg.MaxWork)),
		Protocols:      &protocols,
		ReadTimeout:    30 * time.Second,
		WriteTimeout:   cfg.MaxWork + 10*time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       zap.NewStdLog(log.Named("http")),
	}, cfg.Listen)
	if err != nil {
		return err
	}
	if err := app.Add("http", srv); err != nil {
		return err
	}
	log.Info("starting", zap.String("listen", cfg.Listen), zap.String("admin", cfg.Admin), zap.Stringer("priority", priority))
	return app.Run(context.Background())
}

// handler serves / and /work?ms=N.
func handler(maxWork time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /work", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms < 0 || time.Duration(ms)*time.Millisecond > maxWork {
			http.Error(w, fmt.Sprintf("ms: want an integer from 0 to %d", maxWork.Milliseconds()), http.StatusBadRequest)
			return
		}
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			fmt.Fprintf(w, "worked %dms\n", ms)
		case <-r.Context().Done():
			// Cancelled by the client or cut off at the drain deadline.
			err := context.Cause(r.Context())
			if errors.Is(err, context.Canceled) {
				http.Error(w, "cancelled", http.StatusServiceUnavailable)
			}
		}
	})
	return mux
}
