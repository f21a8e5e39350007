package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
)

const nutcrackerUsage = `Usage: ambassador [-hVt] [-c conf file] [-s stats port] [-a stats addr]
                  [-o output file] [-v verbosity level] [-metrics addr]

Serves every pool of a twemproxy (nutcracker) YAML configuration; keys land on the same
servers as under nutcracker. SIGHUP or a change of the config file reloads it without dropping
client connections; an invalid new config is logged and the old one keeps serving. SIGHUP also
reopens the -o log file, for logrotate.

Options:
  -h, --help             : this help
  -V, --version          : show version and exit
  -t, --test-conf        : test configuration for syntax errors and exit
  -c, --conf-file=S      : set configuration file (default: conf/nutcracker.yml)
  -s, --stats-port=N     : set stats monitoring port (default: 22222)
  -a, --stats-addr=S     : set stats monitoring ip (default: 127.0.0.1)
  -o, --output=S         : set logging file (default: stderr)
  -v, --verbose=N        : set logging level (default: 5, min: 0, max: 11)
  -i, --stats-interval=N : accepted for compatibility (stats here are always current)
  -p, --pid-file=S       : set pid file (default: none)
  -m, --mbuf-size=N      : accepted for compatibility (buffers here grow as needed)
  -metrics ADDR          : serve Prometheus metrics on http://ADDR/metrics (default: off)
`

// runNutcracker is the twemproxy-compatible mode of the ambassador binary.
func runNutcracker(args []string) (int, error) {
	fs := flag.NewFlagSet("ambassador", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		conf, statsAddr, output, pidFile, metricsAddr string
		statsPort, verbose, interval, mbuf            int
		test, version, help                           bool
		badValue                                      string // nutcracker's message for a bad number
	)
	needs := map[string]string{} // what each option's argument is, by name, for its message
	str := func(p *string, def, what string, names ...string) {
		for _, n := range names {
			fs.StringVar(p, n, def, "")
			needs[n] = what
		}
	}
	num := func(p *int, def int, notNum string, check func(name string, n int) string, names ...string) {
		*p = def
		for _, n := range names {
			fs.Var(&numFlag{p: p, name: names[0], notNum: notNum, check: check, bad: &badValue}, n, "")
			needs[n] = "a number"
		}
	}
	boolean := func(p *bool, names ...string) {
		for _, n := range names {
			fs.BoolVar(p, n, false, "")
		}
	}
	str(&conf, "conf/nutcracker.yml", "a file name", "c", "conf-file")
	str(&statsAddr, "127.0.0.1", "a string", "a", "stats-addr")
	str(&output, "", "a file name", "o", "output")
	str(&pidFile, "", "a file name", "p", "pid-file")
	str(&metricsAddr, "", "an address", "metrics")
	// What nutcracker 0.5.0 says of a value that is not a number differs by option; of a missing
	// value it says "requires a number" for each (needs).
	num(&statsPort, 22222, "a number", validPort, "s", "stats-port")
	num(&verbose, 5, "a number", nil, "v", "verbose")
	num(&interval, 30000, "a number", nil, "i", "stats-interval")
	num(&mbuf, 16384, "a non-zero number", mbufSize, "m", "mbuf-size")
	boolean(&test, "t", "test-conf")
	boolean(&version, "V", "version")
	boolean(&help, "h", "help") // -? is an invalid option to nutcracker 0.5.0: exit 1 with the usage
	var daemon, describe bool
	boolean(&daemon, "d", "daemonize")
	boolean(&describe, "D", "describe-stats")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(os.Stderr, "ambassador: %s\n%s", flagError(err, badValue, needs), nutcrackerUsage)
		return 1, nil
	}
	switch {
	case help:
		fmt.Fprint(os.Stdout, nutcrackerUsage)
		return 0, nil
	case version:
		fmt.Fprintln(os.Stdout, "This is podblocks ambassador, twemproxy-compatible (nutcracker 0.5.0 placement)")
		return 0, nil
	case daemon:
		return 1, errors.New("-d (daemonize) is not supported: run the ambassador under a supervisor")
	case describe:
		return 1, errors.New("-D is not supported: see the README for the stats fields, which are nutcracker's")
	case fs.NArg() > 0:
		return 1, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if test {
		// NewServer checks what a run would (and starts nothing), so -t accepts only what serves;
		// and a listen host must resolve, as nutcracker -t requires.
		cfg, err := twemproxy.ReadFile(conf)
		if err == nil {
			_, err = twemproxy.NewServer(cfg, protocols())
		}
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err = twemproxy.ResolveListen(ctx, cfg)
			cancel()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "nutcracker: configuration file '%s' syntax is invalid\n%v\n", conf, err)
			return 1, nil
		}
		fmt.Fprintf(os.Stderr, "nutcracker: configuration file '%s' syntax is ok\n", conf)
		return 0, nil
	}

	log, logFile, err := nutcrackerLogger(output, verbose)
	if err != nil {
		return 1, err
	}
	defer func() {
		_ = log.Sync()
		if logFile != nil {
			_ = logFile.Close()
		}
	}()
	cfg, err := twemproxy.ReadFile(conf)
	if err != nil {
		return 1, err
	}
	if pidFile != "" {
		if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return 1, err
		}
		defer os.Remove(pidFile)
	}
	reg := prometheus.NewRegistry()
	host, _ := os.Hostname()
	srv, err := twemproxy.NewServer(cfg, protocols(),
		twemproxy.WithLogger(log), twemproxy.WithRegisterer(reg), twemproxy.WithSource(host),
		twemproxy.WithStatsAddr(net.JoinHostPort(statsAddr, strconv.Itoa(statsPort))))
	if err != nil {
		return 1, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// SIGHUP's handler is in place before the pools listen: a SIGHUP sent as soon as they answer
	// must reload, not end the process (its default action).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	errc := make(chan error, 3)
	go func() { errc <- srv.Run(ctx) }()
	if metricsAddr != "" {
		// Listen once the pools do, so that an answer on the metrics port means the pools are up:
		// the pools listen on 127.0.0.1 in a pod, where a kubelet's tcpSocket probe cannot reach
		// them, and deploy/kubernetes probes this port instead.
		go func() {
			select {
			case <-srv.Ready():
				errc <- serveMetrics(ctx, metricsAddr, reg)
			case <-ctx.Done():
				errc <- nil
			}
		}()
	} else {
		errc <- nil
	}
	go func() { errc <- watchReload(ctx, hup, conf, srv, log, logFile) }()
	var first error
	for range 3 {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	if first != nil {
		return 1, first
	}
	return 0, nil
}

// numFlag is a number option, read as nutcracker reads it: digits only. A bad value leaves
// nutcracker's message for it in *bad.
type numFlag struct {
	p      *int
	name   string                          // the option's short name, which the message uses
	notNum string                          // what nutcracker says the option requires of a value that is not a number
	check  func(name string, n int) string // nutcracker's message for a number it refuses, or ""
	bad    *string
}

func (f *numFlag) String() string {
	if f.p == nil {
		return ""
	}
	return strconv.Itoa(*f.p)
}

func (f *numFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	msg := ""
	switch {
	case err != nil || s == "" || s[0] < '0' || s[0] > '9':
		msg = "option -" + f.name + " requires " + f.notNum
	case f.check != nil:
		msg = f.check(f.name, n)
	}
	if msg != "" {
		*f.bad = msg
		return errors.New(msg)
	}
	*f.p = n
	return nil
}

func validPort(name string, n int) string {
	if n < 1 || n > 65535 {
		return fmt.Sprintf("option -%s value %d is not a valid port", name, n)
	}
	return ""
}

func mbufSize(name string, n int) string {
	switch {
	case n <= 0:
		return "option -" + name + " requires a non-zero number"
	case n < 512 || n > 16<<20:
		return "mbuf chunk size must be between 512 and 16777216 bytes"
	}
	return ""
}

// flagError says in nutcracker's words what is wrong with the command line: err is fs.Parse's,
// badValue what a numFlag left, needs what each option's argument is.
func flagError(err error, badValue string, needs map[string]string) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return "invalid option -- '" + name + "'"
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok && needs[name] != "" {
		return "option -" + name + " requires " + needs[name]
	}
	if badValue != "" {
		return badValue
	}
	return msg
}

func protocols() twemproxy.Protocols {
	return twemproxy.Protocols{Memcache: &memcache.Protocol{}, Redis: &redis.Protocol{}}
}

// nutcrackerLogger maps nutcracker's verbosity (0-11, default 5 = notice) onto zap levels. When
// output names a file (not "", "stderr" or "stdout"), the logger writes through the returned
// logFile, which SIGHUP reopens as nutcracker does, for logrotate; the caller closes it.
func nutcrackerLogger(output string, verbose int) (log *zap.Logger, logFile *reopenFile, err error) {
	level := zapcore.InfoLevel
	switch {
	case verbose <= 3:
		level = zapcore.ErrorLevel
	case verbose == 4:
		level = zapcore.WarnLevel
	case verbose >= 7:
		level = zapcore.DebugLevel
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(level)
	switch output {
	case "", "stderr", "stdout":
		cfg.OutputPaths = []string{"stderr"}
		if output != "" {
			cfg.OutputPaths = []string{output}
		}
		cfg.ErrorOutputPaths = cfg.OutputPaths
		log, err = cfg.Build()
		return log, nil, err
	}
	if logFile, err = openReopenFile(output); err != nil {
		return nil, nil, err
	}
	// What cfg.Build makes of a production config, over the reopenable file.
	core := zapcore.NewSamplerWithOptions(zapcore.NewCore(zapcore.NewJSONEncoder(cfg.EncoderConfig), logFile, cfg.Level),
		time.Second, cfg.Sampling.Initial, cfg.Sampling.Thereafter)
	return zap.New(core, zap.ErrorOutput(logFile), zap.AddCaller(), zap.AddStacktrace(zapcore.ErrorLevel)), logFile, nil
}

// reopenFile is the -o log file: a zapcore.WriteSyncer whose file Reopen replaces with a new one
// at the same path, so that a log rotated away (renamed) stops receiving lines after SIGHUP.
type reopenFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func openReopenFile(path string) (*reopenFile, error) {
	f, err := openLogFile(path)
	if err != nil {
		return nil, err
	}
	return &reopenFile{path: path, f: f}, nil
}

func openLogFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return f, nil
}

func (r *reopenFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Write(p)
}

func (r *reopenFile) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Sync()
}

// Reopen opens the path anew and closes the old file after the swap; when the open fails, the
// old file stays in use.
func (r *reopenFile) Reopen() error {
	f, err := openLogFile(r.path)
	if err != nil {
		return err
	}
	r.mu.Lock()
	old := r.f
	r.f = f
	r.mu.Unlock()
	if err := old.Close(); err != nil {
		return fmt.Errorf("close the old log file: %w", err)
	}
	return nil
}

// Close closes the current file.
func (r *reopenFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}

func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hs := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// watchReload reloads the configuration on SIGHUP and when the file (or, for a Kubernetes
// ConfigMap volume, its directory's ..data link) changes. A config that does not parse or apply
// is logged and the running one keeps serving. SIGHUP (hup, registered by the caller) also reopens
// logFile, when not nil.
func watchReload(ctx context.Context, hup <-chan os.Signal, path string, srv *twemproxy.Server, log *zap.Logger, logFile *reopenFile) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	abs, _ := filepath.Abs(path)
	dir := filepath.Dir(abs)
	if err := w.Add(dir); err != nil {
		log.Warn("config file watch disabled", zap.Error(err))
	}
	var debounce <-chan time.Time
	var lastMod time.Time
	if fi, err := os.Stat(abs); err == nil {
		lastMod = fi.ModTime()
	}
	reload := func(why string) {
		cfg, err := twemproxy.ReadFile(abs)
		if err != nil {
			log.Error("config reload rejected; the running config keeps serving", zap.String("trigger", why), zap.Error(err))
			return
		}
		if err := srv.Reload(cfg); err != nil {
			log.Error("config reload failed", zap.String("trigger", why), zap.Error(err))
			return
		}
		log.Info("config reloaded", zap.String("trigger", why))
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-srv.Ready():
		}
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			if logFile != nil {
				if err := logFile.Reopen(); err != nil {
					log.Error("log file reopen failed", zap.Error(err))
				}
			}
			reload("SIGHUP")
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			base := filepath.Base(ev.Name)
			if base == filepath.Base(abs) || base == "..data" {
				debounce = time.After(200 * time.Millisecond)
			}
		case err, ok := <-w.Errors:
			if ok {
				log.Warn("config file watch", zap.Error(err))
			}
		case <-debounce:
			debounce = nil
			fi, err := os.Stat(abs)
			if err != nil {
				log.Warn("config file vanished; keeping the running config", zap.Error(err))
				continue
			}
			if fi.ModTime().Equal(lastMod) {
				continue
			}
			lastMod = fi.ModTime()
			reload("file change")
		}
	}
}
