// Command tour runs every podblocks pattern in one process on embedded defaults, narrates what
// happens, and prints a summary table. It exits 0 when every act succeeded, within a minute.
//
//	go run ./examples/tour              play the acts and exit
//	go run ./examples/tour -serve ADDR  then keep the pod running, with its hook server (/statusz,
//	                                    probes, metrics) on ADDR, until SIGTERM
//
// Ctrl-C during the acts stops the act playing and ends the tour (exit 1) once the act has cleaned
// up; a second Ctrl-C does not wait for that cleanup and exits at once (130).
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
	"reflect"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/internal/cmdline"
	"github.com/podblocks/podblocks/lifecycle"
)

// acts are played in this order.
func acts() []act {
	return []act{
		lifecycleAct(),
		sidecarAct(),
		ambassadorAct(),
		shardingAct(),
		adapterAct(),
		electionAct(),
		workqueueAct(),
		scatterAct(),
	}
}

func main() {
	lifecycle.RunAsInit()
	if role := childRole(os.Args); role != "" {
		os.Exit(runChild(role))
	}
	os.Exit(run(os.Args[1:], acts()))
}

// run is the tour command with the command-line arguments args, playing acts; it returns the exit
// code.
func run(args []string, acts []act) int {
	o, err := parseFlags(args, os.Stderr)
	if err != nil {
		return cmdline.Report(os.Stderr, "tour", err)
	}
	// SIGINT or SIGTERM during the acts stops them (each cleans up what it started, the scratch
	// directory goes) and the tour exits 1; a second one while the act playing still cleans up exits
	// at once with 128 + the signal (130 for a second Ctrl-C). Under -serve, once the acts are over,
	// the hook server's App drains on them instead, and the tour exits as the acts went.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	code, err := tour(context.Background(), os.Stdout, acts, o.actTimeout, o.serve, sigs)
	signal.Stop(sigs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tour:", err)
	}
	return code
}

type options struct {
	serve      string
	actTimeout time.Duration
}

// parseFlags reads the command line; a mistake is printed on stderr with the usage.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("tour", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.serve, "serve", "", "after the acts, keep running with the hook server on this address")
	fs.DurationVar(&o.actTimeout, "act-timeout", 20*time.Second, "the longest one act may take")
	if err := cmdline.ParseFlags(fs, args); err != nil {
		return o, err
	}
	if o.serve != "" {
		if err := cmdline.Addr("-serve", o.serve); err != nil {
			return o, err
		}
	}
	if o.actTimeout <= 0 {
		return o, cmdline.Usagef("-act-timeout %v: want a positive duration", o.actTimeout)
	}
	return o, nil
}

type outcome struct {
	act    act
	result string
	err    error
	took   time.Duration
}

// tour plays the acts, prints the summary, and with serve != "" runs the kept components behind a
// hook server until SIGTERM or the end of ctx. It listens on serve before the first act, so that a
// busy port fails the tour at once. A signal from interrupt during the acts stops them and the tour
// (while serving, the hook server's App handles the signals itself); a second one, while the act
// playing is still stopping, ends the process at once (see abandon). It returns the exit code, and
// what made it non-zero, if anything more than the summary says.
func tour(ctx context.Context, out io.Writer, acts []act, actTimeout time.Duration, serve string, interrupt <-chan os.Signal) (int, error) {
	var ln net.Listener
	if serve != "" {
		var err error
		if ln, err = net.Listen("tcp", serve); err != nil {
			return 1, fmt.Errorf("-serve: %w", err)
		}
	}
	closeLn := func() {
		if ln != nil {
			ln.Close()
		}
	}
	dir, err := os.MkdirTemp("", "podblocks-tour")
	if err != nil {
		closeLn()
		return 1, err
	}
	defer os.RemoveAll(dir)
	s := &stage{out: out, dir: dir}
	fmt.Fprintf(out, "podblocks tour: %d patterns from \"Design patterns for container-based distributed systems\"\n\n", len(acts))

	// The acts run under playCtx, which a signal ends.
	playCtx, interrupted := context.WithCancelCause(ctx)
	defer interrupted(nil)
	watching, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case sig := <-interrupt:
			interrupted(fmt.Errorf("interrupted by %v", sig))
		case <-watching:
			return
		}
		// The act playing is stopping; a second signal does not wait for it.
		select {
		case sig := <-interrupt:
			abandon(dir, sig)
		case <-watching:
		}
	}()
	start := time.Now()
	var results []outcome
	for i, a := range acts {
		if playCtx.Err() != nil {
			break
		}
		fmt.Fprintf(out, "Act %d: %s (%s)\n", i+1, a.pattern, a.pkg)
		o := play(playCtx, s, a, actTimeout)
		if o.err != nil {
			fmt.Fprintf(out, "    FAILED: %v\n", o.err)
		}
		results = append(results, o)
		fmt.Fprintln(out)
	}
	close(watching)
	<-watched

	failed := 0
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ACT\tPATTERN\tPACKAGE\tRESULT\tTIME\tSTATUS")
	for i, o := range results {
		status := "ok"
		res := o.result
		if o.err != nil {
			status, res = "FAILED", o.err.Error()
			failed++
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", i+1, o.act.pattern, o.act.pkg, oneLine(res), o.took.Round(time.Millisecond), status)
	}
	tw.Flush()
	fmt.Fprintf(out, "\n%d of %d acts succeeded in %v\n", len(results)-failed, len(acts), time.Since(start).Round(time.Millisecond))
	if err := context.Cause(playCtx); err != nil {
		closeLn()
		return 1, err
	}
	code := 0
	if failed > 0 {
		code = 1
	}
	if serve == "" {
		return code, nil
	}
	if err := keepServing(ctx, out, s, ln); err != nil {
		return 1, err
	}
	return code, nil
}

// abandon ends the process at once on sig, a second signal that came while the act the first one
// stopped was still cleaning up: it says so on stderr, removes the scratch directory dir, and exits
// with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), the status a shell gives a
// process that signal killed. The child processes the acts start with a parent-death signal
// (memcached, the work-item commands) die with the tour on Linux; no summary is printed.
func abandon(dir string, sig os.Signal) {
	fmt.Fprintf(os.Stderr, "tour: second %v: exiting without waiting for the act to stop\n", sig)
	os.RemoveAll(dir)
	code := 1
	if n, ok := sig.(syscall.Signal); ok {
		code = 128 + int(n)
	}
	os.Exit(code)
}

// play plays act a with at most timeout. An act that ran past its timeout failed, whatever it
// returned: it says so, with what went wrong on the way.
func play(ctx context.Context, s *stage, a act, timeout time.Duration) outcome {
	actCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t0 := time.Now()
	res, err := a.run(actCtx, s)
	o := outcome{act: a, result: res, err: err, took: time.Since(t0)}
	var why string
	switch {
	case ctx.Err() != nil:
		why = context.Cause(ctx).Error()
	case actCtx.Err() != nil:
		why = fmt.Sprintf("timed out after %v (-act-timeout)", timeout)
	default:
		return o
	}
	if err != nil {
		o.err = fmt.Errorf("%s: %w", why, err)
	} else {
		o.err = errors.New(why)
	}
	return o
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 100 {
		s = s[:97] + "..."
	}
	return s
}

// keepServing runs the components the acts kept, behind a hook server on ln (which it closes),
// until SIGTERM or the end of ctx.
func keepServing(ctx context.Context, out io.Writer, s *stage, ln net.Listener) error {
	reg := prometheus.NewRegistry()
	app, err := lifecycle.NewApp(lifecycle.WithListener(ln), lifecycle.WithRegisterer(reg), lifecycle.WithGatherer(reg),
		lifecycle.WithPropagationDelay(0), lifecycle.WithStatusRefresh(5*time.Second), lifecycle.WithVersion("tour"))
	if err != nil {
		ln.Close()
		return err
	}
	s.mu.Lock()
	kept, providers := s.kept, s.providers
	s.mu.Unlock()
	for i, c := range kept {
		if err := app.Add(fmt.Sprintf("kept-%d", i+1), c); err != nil {
			ln.Close()
			return err
		}
	}
	for _, p := range providers {
		sp, ok := p.(lifecycle.StatusProvider)
		if ok && !isKept(kept, p) { // App.Add already shows kept components that have a Statusz
			app.Hooks().AddStatus(sp)
		}
	}
	fmt.Fprintf(out, "serving: open http://%s/statusz (SIGTERM to stop)\n", ln.Addr())
	return app.Run(ctx)
}

// isKept reports whether p is one of the kept components.
func isKept(kept []component, p any) bool {
	if !reflect.TypeOf(p).Comparable() {
		return false
	}
	for _, c := range kept {
		if reflect.TypeOf(c) == reflect.TypeOf(p) && any(c) == p {
			return true
		}
	}
	return false
}
