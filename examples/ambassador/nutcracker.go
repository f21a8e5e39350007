package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/sidecar"
)

const nutcrackerUsage = `Usage: ambassador [-hVtD] [-c conf file] [-s stats port] [-a stats addr]
                  [-o output file] [-v verbosity level] [--metrics addr]
                  [--memcache-max-value-size bytes] [--redis-max-request-size bytes]

Serves every pool of a twemproxy (nutcracker) YAML configuration; keys land on the same
servers as under nutcracker. SIGHUP or a change of the config file reloads it without dropping
client connections; an invalid new config is logged and the old one keeps serving. SIGHUP also
reopens the -o log file, for logrotate.

The command line is read as nutcracker 0.5.0 reads it (getopt_long): -tc FILE, -cFILE,
--conf-file=FILE, --conf-file FILE and unique prefixes such as --conf=FILE; options may follow
other arguments, which are ignored with a warning, as nutcracker ignores them; -- ends the options.
A first argument of http or tcp is not ignored: it selects the ambassador's other modes.

Options:
  -h, --help             : this help
  -V, --version          : show version and exit
  -t, --test-conf        : test configuration for syntax errors and exit
  -D, --describe-stats   : print stats description and exit
  -c, --conf-file=S      : set configuration file (default: conf/nutcracker.yml)
  -s, --stats-port=N     : set stats monitoring port (default: 22222)
  -a, --stats-addr=S     : set stats monitoring ip (default: 127.0.0.1)
  -o, --output=S         : set logging file (default: stderr)
  -v, --verbose=N        : set logging level (default: 5, min: 0, max: 11)
  -i, --stats-interval=N : accepted for compatibility (stats here are always current)
  -p, --pid-file=S       : set pid file (default: none)
  -m, --mbuf-size=N      : accepted for compatibility (buffers here grow as needed)
  --metrics=ADDR         : serve Prometheus metrics on http://ADDR/metrics (default: off);
                           also -metrics ADDR; never abbreviated
  --memcache-max-value-size=N : the largest memcache value stored or read, in bytes
                           (default: 1048576, memcached's default; raise it to match
                           memcached -I); never abbreviated
  --redis-max-request-size=N  : the largest redis request, in bytes (default: 67108864);
                           never abbreviated
`

// nutcrackerOptions are nutcracker 0.5.0's options (its short option string is
// "hVtdDv:o:c:s:i:a:p:m:"), and podblocks' own --metrics, which nutcracker refuses in every
// spelling that the ambassador takes (-metrics is -m "etrics" to nutcracker, not a number).
var nutcrackerOptions = []optSpec{
	{short: 'h', long: "help"},
	{short: 'V', long: "version"},
	{short: 't', long: "test-conf"},
	{short: 'd', long: "daemonize"},
	{short: 'D', long: "describe-stats"},
	{short: 'v', long: "verbose", hasArg: true},
	{short: 'o', long: "output", hasArg: true},
	{short: 'c', long: "conf-file", hasArg: true},
	{short: 's', long: "stats-port", hasArg: true},
	{short: 'i', long: "stats-interval", hasArg: true},
	{short: 'a', long: "stats-addr", hasArg: true},
	{short: 'p', long: "pid-file", hasArg: true},
	{short: 'm', long: "mbuf-size", hasArg: true},
	{long: "metrics", hasArg: true, own: true},
	{long: "memcache-max-value-size", hasArg: true, own: true},
	{long: "redis-max-request-size", hasArg: true, own: true},
}

// nutcrackerArgs is what a command line sets.
type nutcrackerArgs struct {
	conf, statsAddr, output, pidFile, metricsAddr string
	memcacheMaxValue, redisMaxRequest             int // 0: the protocol's default
	statsPort, verbose, interval, mbuf            int
	test, version, help, daemon, describe         bool
	ignored                                       []string // the arguments that are not options
}

// parseNutcrackerArgs reads args as nutcracker 0.5.0 does, with podblocks' --metrics: with
// getopt_long (permuting the arguments unless posixlyCorrect, for POSIXLY_CORRECT in the
// environment) and its checks of each value, in the order of the options. The error is
// nutcracker's message for the first problem (for an unknown or ambiguous long option,
// nutcracker prints a NUL byte where this names the option).
//
// Unlike nutcracker's nc_atoi, which wraps a number of 2^31 or more around modulo 2^32 (so that
// "-s 4294967297" is port 1), it says that such a number is not one.
func parseNutcrackerArgs(args []string, posixlyCorrect bool) (nutcrackerArgs, error) {
	return readNutcrackerArgs(args, nutcrackerOptions, posixlyCorrect)
}

// readNutcrackerArgs is parseNutcrackerArgs with the options specs, a subset of
// nutcrackerOptions (the fuzz test compares a command line's outcome without --metrics).
func readNutcrackerArgs(args []string, specs []optSpec, posixlyCorrect bool) (nutcrackerArgs, error) {
	a := nutcrackerArgs{conf: "conf/nutcracker.yml", statsAddr: "127.0.0.1", statsPort: 22222, verbose: 5,
		interval: 30000, mbuf: 16384}
	opts, operands, gerr := getoptLong(args, specs, !posixlyCorrect)
	for _, o := range opts {
		if msg := a.set(o.spec, o.value); msg != "" {
			return a, errors.New(msg)
		}
	}
	if gerr != nil {
		return a, errors.New(nutcrackerOptionError(gerr))
	}
	a.ignored = operands
	return a, nil
}

// set takes one option, as nutcracker's nc_get_options does, and returns nutcracker's message
// for a value it refuses, or "".
func (a *nutcrackerArgs) set(spec *optSpec, v string) string {
	var n int
	var isNum, huge bool
	if spec.hasArg {
		n, isNum, huge = ncAtoi(v)
	}
	notNum := "option -" + string(spec.short) + " requires a number"
	switch spec.short {
	case 'h':
		a.help = true
	case 'V':
		a.version = true
	case 't':
		a.test = true
	case 'd':
		a.daemon = true
	case 'D':
		a.describe = true
	case 'o':
		a.output = v
	case 'c':
		a.conf = v
	case 'a':
		a.statsAddr = v
	case 'p':
		a.pidFile = v
	case 'v':
		if !isNum {
			return notNum
		}
		a.verbose = n
	case 'i':
		if !isNum {
			return notNum
		}
		a.interval = n
	case 's':
		switch {
		case huge: // nutcracker reports the number it wrapped to
			return fmt.Sprintf("option -s value %s is not a valid port", v)
		case !isNum:
			return notNum
		case n < 1 || n > 65535:
			return fmt.Sprintf("option -s value %d is not a valid port", n)
		}
		a.statsPort = n
	case 'm':
		switch {
		case !isNum && !huge || n == 0 && isNum:
			return "option -m requires a non-zero number"
		case huge || n < 512 || n > 16<<20:
			return "mbuf chunk size must be between 512 and 16777216 bytes"
		}
		a.mbuf = n
	case 0: // podblocks' own options, which have no letter
		switch spec.long {
		case "metrics":
			a.metricsAddr = v
		case "memcache-max-value-size", "redis-max-request-size":
			switch {
			case huge || !isNum && v != "" && strings.Trim(v, "0123456789") == "":
				return "option --" + spec.long + " value " + v + " is over the largest size, 2147483647"
			case !isNum || n == 0:
				return "option --" + spec.long + " requires a non-zero number of bytes"
			}
			if spec.long == "redis-max-request-size" {
				a.redisMaxRequest = n
			} else {
				a.memcacheMaxValue = n
			}
		}
	}
	return ""
}

// ncAtoi reads s as nutcracker's nc_atoi does: digits only, at least one; but a number over
// 2^31-1 is not one here. nutcracker refuses 2^31 to 2^32-1 too (as not a number) and wraps
// 2^32 and more around modulo 2^32; huge reports such a number, which -s and -m refuse with
// their out-of-range message, as nutcracker does for most of them.
func ncAtoi(s string) (n int, ok, huge bool) {
	if s == "" {
		return 0, false, false
	}
	var v uint64 // not int: 2^32 overflows a 32-bit int
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return 0, false, false
		}
		if v < 1<<32 {
			v = v*10 + uint64(s[i]-'0')
		}
	}
	switch {
	case v >= 1<<32:
		return 0, false, true
	case v > math.MaxInt32:
		return 0, false, false
	}
	return int(v), true, false
}

// nutcrackerOptionError is nutcracker's message for an option that getopt_long refuses. It
// depends on optopt alone: the letter of an option whose value is missing says what the value is
// ("option -c requires a file name"); any other letter is an invalid option. Where nutcracker
// prints optopt 0 (a NUL byte) for a long option it does not know, or a prefix of several, this
// names the option, and the options it is a prefix of.
func nutcrackerOptionError(e *getoptError) string {
	switch e.opt {
	case 'o', 'c', 'p':
		return "option -" + string(e.opt) + " requires a file name"
	case 'm', 'v', 's', 'i':
		return "option -" + string(e.opt) + " requires a number"
	case 'a':
		return "option -" + string(e.opt) + " requires a string"
	case 0:
		switch {
		case e.missing && e.spec.long == "metrics": // podblocks' own options, which have no letter
			return "option -" + e.spec.long + " requires an address"
		case e.missing:
			return "option --" + e.spec.long + " requires a number"
		case len(e.ambiguous) > 0:
			return "invalid option -- '" + e.name + "' (ambiguous: " + strings.Join(e.ambiguous, ", ") + ")"
		}
		return "invalid option -- '" + e.name + "'"
	}
	return "invalid option -- '" + string([]byte{e.opt}) + "'"
}

// runNutcracker is the twemproxy-compatible mode of the ambassador binary.
func runNutcracker(args []string) (int, error) {
	_, posixlyCorrect := os.LookupEnv("POSIXLY_CORRECT")
	a, err := parseNutcrackerArgs(args, posixlyCorrect)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ambassador: %v\n%s", err, nutcrackerUsage)
		return 1, nil
	}
	// In nutcracker's order: -h, -V and -D exit before -t, and -t before -d daemonizes.
	switch {
	case a.help:
		fmt.Fprint(os.Stdout, nutcrackerUsage)
		return 0, nil
	case a.version:
		fmt.Fprintln(os.Stdout, "This is podblocks ambassador, twemproxy-compatible (nutcracker 0.5.0 placement)")
		return 0, nil
	case a.describe:
		describeStats(os.Stdout)
		return 0, nil
	case a.test:
		return testConf(a.conf, a.ignored), nil
	case a.daemon:
		return 1, errors.New("-d (daemonize) is not supported: run the ambassador under a supervisor")
	}
	log, logFile, err := nutcrackerLogger(a.output, a.verbose)
	if err != nil {
		return 1, err
	}
	defer func() {
		_ = log.Sync()
		if logFile != nil {
			_ = logFile.Close()
		}
	}()
	if len(a.ignored) > 0 {
		log.Warn(ignoredArgs, zap.Strings("args", a.ignored))
	}
	cfg, err := twemproxy.ReadFile(a.conf)
	if err != nil {
		return 1, err
	}
	if a.pidFile != "" {
		if err := os.WriteFile(a.pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return 1, err
		}
		defer os.Remove(a.pidFile)
	}
	reg := prometheus.NewRegistry()
	host, _ := os.Hostname()
	srv, err := twemproxy.NewServer(cfg, protocols(a),
		twemproxy.WithLogger(log), twemproxy.WithRegisterer(reg), twemproxy.WithSource(host),
		twemproxy.WithStatsAddr(net.JoinHostPort(a.statsAddr, strconv.Itoa(a.statsPort))))
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
	if a.metricsAddr != "" {
		// Listen once the pools do, so that an answer on the metrics port means the pools are up:
		// the pools listen on 127.0.0.1 in a pod, where a kubelet's tcpSocket probe cannot reach
		// them, and deploy/kubernetes probes this port instead.
		go func() {
			select {
			case <-srv.Ready():
				errc <- serveMetrics(ctx, a.metricsAddr, reg)
			case <-ctx.Done():
				errc <- nil
			}
		}()
	} else {
		errc <- nil
	}
	go func() { errc <- watchReload(ctx, hup, a.conf, srv, log, logFile) }()
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

// ignoredArgs is the warning for the arguments that are not options, which nutcracker ignores.
const ignoredArgs = "arguments that are not options are ignored, as nutcracker ignores them"

// testConf is -t: it says on stderr, in nutcracker's words, whether the config file conf would
// serve, and returns the exit status. NewServer checks what a run would (and starts nothing), so
// -t accepts only what serves; and a listen host must resolve, as nutcracker -t requires. The
// arguments that are not options (ignored) get a warning after the verdict.
func testConf(conf string, ignored []string) int {
	cfg, err := twemproxy.ReadFile(conf)
	if err == nil {
		_, err = twemproxy.NewServer(cfg, protocols(nutcrackerArgs{}))
	}
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = twemproxy.ResolveListen(ctx, cfg)
		cancel()
	}
	code := 0
	if err != nil {
		fmt.Fprintf(os.Stderr, "nutcracker: configuration file '%s' syntax is invalid\n%v\n", conf, err)
		code = 1
	} else {
		fmt.Fprintf(os.Stderr, "nutcracker: configuration file '%s' syntax is ok\n", conf)
	}
	if len(ignored) > 0 {
		fmt.Fprintf(os.Stderr, "ambassador: %s: %q\n", ignoredArgs, ignored)
	}
	return code
}

// protocols returns the pools' protocols with the size limits of a's options.
func protocols(a nutcrackerArgs) twemproxy.Protocols {
	return twemproxy.Protocols{Memcache: &memcache.Protocol{MaxValueSize: a.memcacheMaxValue},
		Redis: &redis.Protocol{MaxRequestSize: a.redisMaxRequest}}
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

// watchReload reloads the configuration on SIGHUP and when the file's content changes. The file is
// watched by a sidecar.Reloader, which compares a hash of the content (a replacement with the same
// modification time and size is seen) and watches the directories of the path and of every symlink
// met on the way to it, with the final target's (a Kubernetes ConfigMap volume's ..data link, a -c
// path that is a symlink into another directory), with a periodic rescan for a missed event. A
// config that does not parse or apply is logged and the running one keeps serving. SIGHUP (hup,
// registered by the caller) also reopens logFile, when not nil.
func watchReload(ctx context.Context, hup <-chan os.Signal, path string, srv *twemproxy.Server, log *zap.Logger, logFile *reopenFile) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	var mu sync.Mutex // a SIGHUP and a change read and apply the file one at a time, in order
	reload := func(why string) error {
		mu.Lock()
		defer mu.Unlock()
		cfg, err := twemproxy.ReadFile(abs)
		if err != nil {
			log.Error("config reload rejected; the running config keeps serving", zap.String("trigger", why), zap.Error(err))
			return err
		}
		if err := srv.Reload(cfg); err != nil {
			log.Error("config reload failed", zap.String("trigger", why), zap.Error(err))
			return err
		}
		log.Info("config reloaded", zap.String("trigger", why))
		return nil
	}
	rl, err := sidecar.NewReloader([]string{abs}, func(context.Context) error {
		if err := reload("file change"); err != nil {
			// Logged; not retried, nor counted applied: the next change or SIGHUP reads the file anew.
			return fmt.Errorf("%w: %w", sidecar.ErrRejected, err)
		}
		return nil
	}, sidecar.WithLogger(log), sidecar.WithDebounce(200*time.Millisecond))
	if err != nil {
		return err
	}
	rctx, stop := context.WithCancel(ctx)
	watched := make(chan error, 1)
	go func() { watched <- rl.Run(rctx) }()
	defer func() {
		stop()
		<-watched
	}()
	for {
		select { // a SIGHUP is taken once the file is watched and the pools listen
		case <-ctx.Done():
			return nil
		case <-rl.Ready():
		}
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
			_ = reload("SIGHUP") // logged; the running config keeps serving
		}
	}
}

// describeStats prints the stats document's pool and server fields, as nutcracker -D does (in its
// layout, with podblocks' own words for each).
func describeStats(w io.Writer) {
	for _, server := range []bool{false, true} {
		if server {
			fmt.Fprint(w, "\nserver stats:\n")
		} else {
			fmt.Fprint(w, "pool stats:\n")
		}
		for _, f := range twemproxy.StatsFields() {
			if f.Server == server {
				fmt.Fprintf(w, "  %-19s \"%s\"\n", f.Name, f.Help)
			}
		}
	}
}
