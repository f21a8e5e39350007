// Command reloader is a config-reload sidecar: it watches files and directories (ConfigMap and Secret
// volumes included: it sees Kubernetes' ..data symlink swaps and compares content hashes) and, after
// each change, signals the application (by -pid, or by -process name in a shared PID namespace) or
// calls its -webhook, retried until the application answers 2xx.
//
//	reloader -watch /etc/app -process nginx -signal HUP
//	reloader -watch /etc/prometheus -webhook http://127.0.0.1:9090/-/reload
//
// A -watch path that does not exist yet (an optional ConfigMap key, a file under a syncer's link
// before its first publish) is logged as a warning ("watched path does not exist yet; a change is
// reported when it appears") and watched for: its appearance is a change.
//
// A -pid that no process has yet (the application container starts after this one) is logged as a
// warning ("-pid names no process yet: waiting for it to start before watching"), repeated every
// minute, and waited for (checked every 200ms); the reloader watches from when a process has it
// (logged: "the -pid process runs: watching"), with the content then as the baseline, since a
// process reads the content as it is when it starts. Whatever process gets the PID is the one
// signalled: where PIDs are not known in advance (a pod's shared PID namespace), -process is the
// surer choice. A -pid above the kernel's largest (/proc/sys/kernel/pid_max), which no process can
// ever have, is a usage error. Once the -pid process has exited, a change logs that it is not
// signalled again (its PID may name another process by then), and the reloader keeps running:
// restart it with the new PID.
//
// A -process name that no process has yet is
// logged (the application container may not have started): a change signals whoever has the name
// then, and a signal that reaches no process is logged ("reload signal reached no process"), not
// retried (SIGHUP kills a process that has not installed its handler yet), and counted:
// podblocks_sidecar_reloader_reloads_total{result="no_process"} on -metrics ADDR (GET /metrics).
//
// SIGTERM or SIGINT stops it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/podblocks/podblocks/internal/cmdline"
	"github.com/podblocks/podblocks/sidecar"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

func main() {
	cmdline.Exit("reloader", run(os.Args[1:], os.Stderr))
}

// signals are the -signal names; signalsOS adds the operating system's own (USR1, USR2 on Unix).
var signals = func() map[string]syscall.Signal {
	m := map[string]syscall.Signal{"HUP": syscall.SIGHUP, "TERM": syscall.SIGTERM, "INT": syscall.SIGINT,
		"QUIT": syscall.SIGQUIT}
	maps.Copy(m, signalsOS)
	return m
}()

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("reloader", flag.ContinueOnError)
	fs.SetOutput(stderr)
	watch := fs.String("watch", "", "files or directories to watch, comma-separated")
	webhook := fs.String("webhook", "", "URL to call after a change")
	method := fs.String("method", "POST", "HTTP method for -webhook")
	pid := fs.Int("pid", 0, "PID to signal after a change")
	process := fs.String("process", "", "process name to signal after a change (shared PID namespace)")
	sigName := fs.String("signal", "HUP", "signal for -pid/-process: HUP, USR1, USR2, TERM, INT, QUIT")
	debounce := fs.Duration("debounce", 100*time.Millisecond, "wait for changes to settle")
	poll := fs.Duration("poll", 10*time.Second, "rescan period (catches what inotify misses)")
	metrics := fs.String("metrics", "", "listen address for GET /metrics, such as 127.0.0.1:9102 (empty: none)")
	if err := cmdline.ParseFlags(fs, args); err != nil {
		return err
	}
	if *watch == "" {
		return cmdline.Usagef("-watch is required")
	}
	paths, err := cmdline.List("watch", *watch) // an empty item would watch "."
	if err != nil {
		return err
	}
	if err := cmdline.OnlyWith(fs, *webhook == "", "-pid or -process", "signal"); err != nil {
		return err
	}
	if err := cmdline.OnlyWith(fs, *webhook != "", "-webhook", "method"); err != nil {
		return err
	}
	sig, ok := signals[strings.TrimPrefix(strings.ToUpper(*sigName), "SIG")]
	if !ok {
		return cmdline.Usagef("-signal %q: unknown; want one of %s", *sigName, strings.Join(slices.Sorted(maps.Keys(signals)), ", "))
	}
	var action sidecar.Action
	switch n := btoi(*webhook != "") + btoi(*pid != 0) + btoi(*process != ""); {
	case n != 1:
		return cmdline.Usagef("want exactly one of -webhook, -pid and -process")
	case *webhook != "":
		if err := cmdline.HTTPURL("-webhook", *webhook); err != nil {
			return err
		}
		if _, err := http.NewRequest(*method, *webhook, nil); err != nil {
			return cmdline.Usagef("-method %q: %w", *method, err)
		}
		action = sidecar.Webhook(nil, *method, *webhook)
	case *pid < 0: // kill(2) would signal a process group, or (-1) every process it may
		return cmdline.Usagef("-pid %d: want a process ID above 0", *pid)
	case *pid != 0:
		action = sidecar.SignalPID(*pid, sig)
	default:
		action = sidecar.SignalName("", *process, sig)
	}
	if *poll <= 0 {
		return cmdline.Usagef("-poll %v: want more than 0", *poll)
	}
	if *debounce < 0 {
		return cmdline.Usagef("-debounce %v: want 0 or more", *debounce)
	}
	if *metrics != "" {
		if err := cmdline.Addr("-metrics", *metrics); err != nil {
			return err
		}
	}
	// Signal 0 sends nothing: it finds out whether the target exists and may be signalled.
	waitPID := false
	if *pid != 0 {
		if max := pidMax(); max > 0 && *pid > max {
			return cmdline.Usagef("-pid %d: above the largest process ID here, %d (%s)", *pid, max, pidMaxFile)
		}
		switch err := sidecar.SignalPID(*pid, 0)(context.Background()); {
		case errors.Is(err, sidecar.ErrNoProcess):
			waitPID = true // the application may not have started yet
		case err != nil:
			return cmdline.Usagef("-pid %d: %w", *pid, err)
		}
	}
	log, err := zap.NewProduction()
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	if *process != "" {
		switch err := sidecar.SignalName("", *process, 0)(context.Background()); {
		case errors.Is(err, sidecar.ErrNoProcess):
			log.Warn("no process has the -process name yet: a change signals it once it runs", zap.String("process", *process))
		case err != nil:
			return cmdline.Usagef("-process %q: %w", *process, err)
		}
	}
	reg := prometheus.NewRegistry()
	r, err := sidecar.NewReloader(paths, action, sidecar.WithDebounce(*debounce),
		sidecar.WithPollInterval(*poll), sidecar.WithLogger(log), sidecar.WithRegisterer(reg))
	if err != nil {
		return err
	}
	if *metrics != "" {
		stopMetrics, err := serveMetrics(*metrics, reg, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if waitPID {
		if err := waitForPID(ctx, *pid, log); err != nil || ctx.Err() != nil {
			return err
		}
	}
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		select {
		case <-r.Ready():
			log.Info("watching", zap.String("paths", *watch))
		case <-ctx.Done():
		}
	}()
	err = r.Run(ctx)
	stop()
	return err
}

// serveMetrics serves GET /metrics of reg on addr until stop, which returns once the server is done.
func serveMetrics(addr string, reg *prometheus.Registry, log *zap.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 64 << 10}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics server stopped", zap.Error(err))
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

// pidMaxFile holds the largest process ID the kernel gives (Linux).
const pidMaxFile = "/proc/sys/kernel/pid_max"

// pidMax returns the largest process ID the kernel gives, or 0 where that is not known.
func pidMax() int {
	b, err := os.ReadFile(pidMaxFile)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// pidPoll is how often the reloader checks for a -pid that no process has yet; pidWarn, how often it
// says again that it waits.
const (
	pidPoll = 200 * time.Millisecond
	pidWarn = time.Minute
)

// waitForPID waits until a process has pid, or ctx ends (nil both ways), logging that it waits. An
// error other than "no such process" (EPERM: a process the reloader may not signal got the PID)
// ends the wait with it.
func waitForPID(ctx context.Context, pid int, log *zap.Logger) error {
	began := time.Now()
	log.Warn("-pid names no process yet: waiting for it to start before watching", zap.Int("pid", pid))
	poll := time.NewTicker(pidPoll)
	defer poll.Stop()
	warned := began
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
		}
		switch err := sidecar.SignalPID(pid, 0)(ctx); {
		case errors.Is(err, sidecar.ErrNoProcess):
			if time.Since(warned) >= pidWarn {
				warned = time.Now()
				log.Warn("-pid names no process yet: still waiting for it to start", zap.Int("pid", pid),
					zap.Duration("waited", time.Since(began).Round(time.Second)))
			}
		case err != nil:
			return fmt.Errorf("-pid %d: %w", pid, err)
		default:
			log.Info("the -pid process runs: watching", zap.Int("pid", pid), zap.Duration("waited", time.Since(began).Round(time.Millisecond)))
			return nil
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
