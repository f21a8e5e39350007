// Command statsd-adapter receives statsd lines and serves them as Prometheus metrics. It takes
// statsd_exporter's flag names and reads its mapping config as-is, so it drops in where
// statsd_exporter ran:
//
//	statsd-adapter --statsd.listen-udp=:9125 --statsd.listen-tcp=:9125 \
//	    --statsd.mapping-config=mapping.yml --web.listen-address=:9102 --web.telemetry-path=/metrics
//
// SIGHUP (or POST /-/reload with --web.enable-lifecycle) reloads the mapping config; SIGTERM and
// SIGINT stop it. statsd_exporter's cache and queue tuning flags are accepted and ignored (the
// adapter has no event queue: each reader parses and applies what it reads), and so are
// --log.format and --debug.dump-fsm; --statsd.relay.address and --web.config.file, which it does not
// support, are refused. A boolean flag --NAME is turned off with --NAME=false or, as with
// statsd_exporter, --no-NAME. --version prints the version and exits 0.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/podblocks/podblocks/adapter/statsd"
	"github.com/podblocks/podblocks/internal/cmdline"
	"github.com/podblocks/podblocks/lifecycle"
)

func main() {
	cmdline.Exit("statsd-adapter", run(os.Args[1:], os.Stdout, os.Stderr))
}

type config struct {
	webAddr, telemetryPath          string
	enableLifecycle                 bool
	udp, tcp, unixgram, unixMode    string
	mappingConfig                   string
	readBuffer, readers             int
	dogstatsd, influx, librato, sfx bool
	checkConfig, version            bool
	logLevel                        string

	level zapcore.Level // logLevel, parsed
	mode  uint32        // unixMode, parsed
}

// logLevels are statsd_exporter's --log.level names.
var logLevels = map[string]zapcore.Level{"debug": zapcore.DebugLevel, "info": zapcore.InfoLevel,
	"warn": zapcore.WarnLevel, "error": zapcore.ErrorLevel}

// negateBoolFlags adds --no-NAME for each boolean flag --NAME of fs, which sets it false: the
// flag library of statsd_exporter (kingpin) reads that form too, and its boolean flags that are on by
// default (--statsd.parse-dogstatsd-tags, ...) are turned off with it.
func negateBoolFlags(fs *flag.FlagSet) {
	var bools []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			bools = append(bools, f)
		}
	})
	for _, f := range bools {
		fs.Var(negation{f.Value}, "no-"+f.Name, "--"+f.Name+"=false")
	}
}

// negation is the flag --no-NAME of the boolean flag whose value it holds.
type negation struct{ v flag.Value }

func (n negation) IsBoolFlag() bool { return true }

func (n negation) String() string { return "" }

func (n negation) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	return n.v.Set(strconv.FormatBool(!b))
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("statsd-adapter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.webAddr, "web.listen-address", ":9102", "address for the web interface and metrics")
	fs.StringVar(&c.telemetryPath, "web.telemetry-path", "/metrics", "path of the metrics endpoint")
	fs.BoolVar(&c.enableLifecycle, "web.enable-lifecycle", false, "enable POST /-/reload and /-/quit")
	fs.StringVar(&c.udp, "statsd.listen-udp", ":9125", `UDP address for statsd lines ("" disables)`)
	fs.StringVar(&c.tcp, "statsd.listen-tcp", ":9125", `TCP address for statsd lines ("" disables)`)
	fs.StringVar(&c.unixgram, "statsd.listen-unixgram", "", `unixgram socket path for statsd lines ("" disables)`)
	fs.StringVar(&c.unixMode, "statsd.unixsocket-mode", "755", "permission mode of the unixgram socket (octal)")
	fs.StringVar(&c.mappingConfig, "statsd.mapping-config", "", "statsd_exporter mapping config file")
	fs.IntVar(&c.readBuffer, "statsd.read-buffer", 32<<20, "receive buffer of the UDP and unixgram sockets, in bytes")
	fs.IntVar(&c.readers, "statsd.readers", 0, "reader goroutines per datagram socket (0: one per CPU)")
	fs.BoolVar(&c.dogstatsd, "statsd.parse-dogstatsd-tags", true, "parse DogStatsD tags")
	fs.BoolVar(&c.influx, "statsd.parse-influxdb-tags", true, "parse InfluxDB tags")
	fs.BoolVar(&c.librato, "statsd.parse-librato-tags", true, "parse Librato tags")
	fs.BoolVar(&c.sfx, "statsd.parse-signalfx-tags", true, "parse SignalFX tags")
	fs.BoolVar(&c.checkConfig, "check-config", false, "check the mapping config and exit")
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	fs.StringVar(&c.logLevel, "log.level", "info", "log level: debug, info, warn, error")
	logFormat := fs.String("log.format", "json", "logfmt or json, accepted for statsd_exporter compatibility (logs are zap JSON)")
	for _, name := range []string{"statsd.cache-size", "statsd.cache-type", "statsd.event-queue-size",
		"statsd.event-flush-threshold", "statsd.event-flush-interval", "statsd.udp-packet-queue-size",
		"statsd.relay.packet-length", "debug.dump-fsm"} {
		fs.String(name, "", "accepted for statsd_exporter compatibility; ignored")
	}
	// Refused rather than ignored: ignoring them would drop the relayed lines, or serve without
	// the TLS and authentication the file configures.
	relay := fs.String("statsd.relay.address", "", "not supported (statsd_exporter's relay); refused when set")
	webConfig := fs.String("web.config.file", "", "not supported (statsd_exporter's TLS and basic auth); refused when set")
	negateBoolFlags(fs)
	if err := cmdline.ParseFlags(fs, args); err != nil {
		return nil, err
	}
	level, ok := logLevels[c.logLevel]
	if !ok {
		return nil, cmdline.Usagef("--log.level %q: want debug, info, warn or error", c.logLevel)
	}
	c.level = level
	switch {
	case *logFormat != "logfmt" && *logFormat != "json":
		return nil, cmdline.Usagef("--log.format %q: want logfmt or json", *logFormat)
	case *relay != "":
		return nil, cmdline.Usagef("--statsd.relay.address %q: relaying is not supported", *relay)
	case *webConfig != "":
		return nil, cmdline.Usagef("--web.config.file %q: TLS and basic auth are not supported", *webConfig)
	}
	mode, err := strconv.ParseUint(c.unixMode, 8, 32)
	if err != nil {
		return nil, cmdline.Usagef("--statsd.unixsocket-mode %q: want an octal mode", c.unixMode)
	}
	c.mode = uint32(mode)
	switch {
	case c.readers < 0:
		return nil, cmdline.Usagef("--statsd.readers %d: want 0 or more", c.readers)
	case c.readBuffer < 0:
		return nil, cmdline.Usagef("--statsd.read-buffer %d: want 0 or more", c.readBuffer)
	case !strings.HasPrefix(c.telemetryPath, "/"):
		return nil, cmdline.Usagef("--web.telemetry-path %q: want a path starting with /", c.telemetryPath)
	}
	for _, a := range []struct{ flag, addr string }{{"--web.listen-address", c.webAddr}, {"--statsd.listen-udp", c.udp}, {"--statsd.listen-tcp", c.tcp}} {
		if a.addr == "" && a.flag != "--web.listen-address" {
			continue // disabled
		}
		if err := cmdline.Addr(a.flag, a.addr); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// version is what --version prints, in statsd_exporter's shape: the module's version and VCS
// revision as the build recorded them, and the Go version.
func version() string {
	v, rev, gov := "(unknown)", "", runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		v = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
			}
		}
	}
	return fmt.Sprintf("statsd-adapter, version %s (revision: %s)\n  go version: %s\n  platform: %s/%s", v, rev, gov, runtime.GOOS, runtime.GOARCH)
}

func run(args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if c.version {
		fmt.Fprintln(stdout, version())
		return nil
	}
	var mapping *statsd.MappingConfig
	if c.mappingConfig != "" {
		if mapping, err = statsd.LoadMappingConfig(c.mappingConfig); err != nil {
			return err
		}
	}
	if c.checkConfig {
		fmt.Fprintln(stdout, "configuration OK")
		return nil
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(c.level)
	zc.OutputPaths, zc.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	log, err := zc.Build()
	if err != nil {
		return err
	}
	defer log.Sync()

	var formats statsd.TagFormat
	if c.dogstatsd {
		formats |= statsd.DogStatsDTags
	}
	if c.influx {
		formats |= statsd.InfluxDBTags
	}
	if c.librato {
		formats |= statsd.LibratoTags
	}
	if c.sfx {
		formats |= statsd.SignalFXTags
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := statsd.New(
		statsd.WithUDP(c.udp), statsd.WithTCP(c.tcp), statsd.WithUnixgram(c.unixgram, c.mode),
		statsd.WithMapping(mapping), statsd.WithTagFormats(formats), statsd.WithReadBuffer(c.readBuffer),
		statsd.WithReaders(c.readers), statsd.WithLogger(log.Named("statsd")), statsd.WithRegisterer(reg),
		statsd.WithReservedNames(reg), // served together below: a statsd name of reg's would be dropped
	)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, quit := context.WithCancel(ctx)
	defer quit()

	reload := func() error {
		if c.mappingConfig == "" {
			return nil
		}
		m, err := statsd.LoadMappingConfig(c.mappingConfig)
		if err != nil {
			log.Error("reload mapping config", zap.Error(err))
			return err
		}
		exp.SetMapping(m)
		log.Info("mapping config reloaded", zap.Int("mappings", len(m.Mappings)))
		return nil
	}

	metrics := promhttp.HandlerFor(prometheus.Gatherers{reg, exp},
		promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: 16})
	mux := http.NewServeMux()
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "OK") })
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-exp.Ready():
			io.WriteString(w, "OK")
		default:
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	})
	if c.enableLifecycle {
		mux.HandleFunc("POST /-/reload", func(w http.ResponseWriter, r *http.Request) {
			if err := reload(); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			io.WriteString(w, "OK")
		})
		mux.HandleFunc("POST /-/quit", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			io.WriteString(w, "Requesting termination... Goodbye!")
			if f, ok := w.(http.Flusher); ok {
				f.Flush() // the answer is out before the server starts shutting down
			}
			quit()
		})
	}
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "<html><head><title>statsd adapter</title></head><body><h1>podblocks statsd adapter</h1>"+
			"<p><a href=%q>Metrics</a></p></body></html>", c.telemetryPath)
	})
	// The metrics path is matched as it is, not as a ServeMux pattern (whose syntax would refuse,
	// or read wildcards and a method in, a path statsd_exporter serves), ahead of the other endpoints.
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == c.telemetryPath {
			metrics.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
	web, err := lifecycle.NewHTTPServer(&http.Server{
		Handler: handler, ReadTimeout: 10 * time.Second, WriteTimeout: 60 * time.Second,
		MaxHeaderBytes: 16 << 10,
	}, c.webAddr)
	if err != nil {
		return err
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var g lifecycle.Group
	g.Logger = log
	if err := g.Add("statsd", exp); err != nil {
		return err
	}
	if err := g.Add("web", web); err != nil {
		return err
	}
	if err := g.Add("reloader", lifecycle.Func(func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-hup:
				reload()
			}
		}
	})); err != nil {
		return err
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-g.Ready():
			u, _ := exp.UDPAddr()
			t, _ := exp.TCPAddr()
			log.Info("listening", zap.String("udp", fmt.Sprint(u)), zap.String("tcp", fmt.Sprint(t)),
				zap.String("web", web.Addr()))
		case <-done:
		}
	}()
	return g.Run(ctx)
}
