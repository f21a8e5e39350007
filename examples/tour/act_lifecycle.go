package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podblocks/podblocks/lifecycle"
)

// lifecycleAct shows the single-container management interface: probes, priority shedding and a
// graceful deletion that loses no request.
func lifecycleAct() act {
	return act{pattern: "single-container management", pkg: "lifecycle", run: playLifecycle}
}

func playLifecycle(ctx context.Context, s *stage) (string, error) {
	hooksLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		hooksLn.Close()
		return "", err
	}
	app, err := lifecycle.NewApp(lifecycle.WithListener(hooksLn), lifecycle.WithSignals(),
		lifecycle.WithPropagationDelay(300*time.Millisecond), lifecycle.WithGracePeriod(5*time.Second))
	if err != nil {
		return "", err
	}
	shedder, err := lifecycle.NewShedder(4)
	if err != nil {
		return "", err
	}
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseHeld := func() { releaseOnce.Do(func() { close(release) }) }
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) { <-release })
	srv, err := lifecycle.NewHTTPServerListener(&http.Server{Handler: shedder.Middleware(mux)}, appLn)
	if err != nil {
		return "", err
	}
	if err := app.Add("app", srv); err != nil {
		return "", err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx) }()
	ran := false // Run returned, and done was read
	defer func() {
		releaseHeld() // on an early return too, or held requests would hold up the app's shutdown
		stop()
		if !ran {
			<-done
		}
	}()
	select {
	case <-app.Ready():
	case err := <-done:
		ran = true
		if err == nil { // Run ends with nil when its ctx, this act's, ended
			err = fmt.Errorf("the app stopped before it was ready: %w", context.Cause(ctx))
		}
		return "", err
	}
	hooks, base := "http://"+hooksLn.Addr().String(), "http://"+appLn.Addr().String()
	s.say("pod started; hook server on %s", hooks)
	code, body := get(hooks + "/readyz?verbose")
	s.say("GET /readyz?verbose -> %d: %s", code, oneLine(body))

	// Priority: two held requests fill half the limit; sheddable work is now shed, critical is not.
	var held sync.WaitGroup
	for range 2 {
		held.Add(1)
		go func() { defer held.Done(); get(base + "/hold") }()
	}
	err = waitFor(ctx, "2 requests held", time.Millisecond, func() bool { return shedder.InFlight() >= 2 })
	shed, crit := 0, 0
	if err == nil {
		shed = getWith(base+"/", "sheddable")
		crit = getWith(base+"/", "critical")
	}
	releaseHeld()
	held.Wait()
	if err != nil {
		return "", err
	}
	s.say("under load: sheddable request -> %d, critical request -> %d", shed, crit)
	if shed != http.StatusServiceUnavailable || crit != http.StatusOK {
		return "", fmt.Errorf("shedding: sheddable %d critical %d, want 503 and 200", shed, crit)
	}

	// Graceful deletion: clients keep sending until readiness fails, as endpoints propagation does.
	var sent, failed atomic.Int64
	var routed atomic.Bool
	routed.Store(true)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for routed.Load() {
				sent.Add(1)
				if getWith(base+"/", "default") != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	if err := waitFor(ctx, "200 requests", time.Millisecond, func() bool { return sent.Load() >= 200 }); err != nil {
		routed.Store(false)
		wg.Wait()
		return "", err
	}
	s.say("preStop hook: POST /prestop while 4 clients send requests")
	preStopped := make(chan int, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, hooks+"/prestop", nil)
		var resp *http.Response
		if err == nil {
			resp, err = http.DefaultClient.Do(req)
		}
		if err != nil {
			preStopped <- 0
			return
		}
		resp.Body.Close()
		preStopped <- resp.StatusCode
	}()
	err = waitFor(ctx, "readiness to fail", 5*time.Millisecond, func() bool { c, _ := get(hooks + "/readyz"); return c != 200 })
	routed.Store(false)
	wg.Wait()
	code = <-preStopped
	if err != nil {
		return "", err
	}
	s.say("readiness failed at once; clients stopped; /prestop -> %d", code)
	select {
	case err := <-done:
		ran = true
		if err != nil {
			return "", err
		}
		if ctx.Err() != nil { // Run ended with the act's ctx, not after the drain
			return "", fmt.Errorf("the app did not stop after the drain: %w", context.Cause(ctx))
		}
	case <-ctx.Done():
		return "", fmt.Errorf("the app did not stop after the drain: %w", context.Cause(ctx))
	}
	s.say("drained and stopped: %d requests, %d failed", sent.Load(), failed.Load())
	if failed.Load() != 0 {
		return "", fmt.Errorf("%d of %d requests failed during the drain", failed.Load(), sent.Load())
	}
	return fmt.Sprintf("probes ok; sheddable shed first; drain lost 0 of %d requests", sent.Load()), nil
}

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func getWith(url, class string) int {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("X-Priority", class)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
