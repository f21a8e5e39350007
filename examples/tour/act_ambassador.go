package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/podblocks/podblocks/ambassador"
)

// ambassadorAct puts an HTTP ambassador in front of three backends on loopback, kills one under
// load (idempotent requests are retried elsewhere and the dead one is ejected), brings it back, and
// sends 20% of traffic to an experiment backend with a hot split change.
func ambassadorAct() act {
	return act{
		pattern: "ambassador",
		pkg:     "ambassador",
		run: func(ctx context.Context, s *stage) (string, error) {
			var backends []*tourBackend
			defer func() {
				for _, b := range backends {
					b.stop()
				}
			}()
			for _, name := range []string{"web-0", "web-1", "web-2", "experiment"} {
				b, err := startTourBackend(name)
				if err != nil {
					return "", err
				}
				backends = append(backends, b)
			}
			var eps []ambassador.Endpoint
			for _, b := range backends[:3] {
				eps = append(eps, ambassador.Endpoint{Addr: b.addr})
			}
			cluster, err := ambassador.NewCluster(ambassador.NewStatic(eps...), ambassador.WithName("web"),
				ambassador.WithBalancer(ambassador.NewP2C),
				ambassador.WithOutlier(ambassador.Outlier{ConsecutiveFailures: 3, BaseEjection: 500 * time.Millisecond}))
			if err != nil {
				return "", err
			}
			exp, err := ambassador.NewCluster(ambassador.NewStatic(ambassador.Endpoint{Addr: backends[3].addr}), ambassador.WithName("experiment"))
			if err != nil {
				return "", err
			}
			proxy, err := ambassador.NewHTTPProxy("127.0.0.1:0", cluster, ambassador.WithRetries(2),
				ambassador.WithSplits(ambassador.Split{Cluster: exp, Percent: 0}))
			if err != nil {
				return "", err
			}
			s.keep(nil, cluster) // its final state stays on /statusz under -serve
			pctx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- proxy.Run(pctx) }()
			if err := awaitReady(ctx, "the proxy", proxy.Ready(), done); err != nil {
				return "", err
			}
			url := "http://" + proxy.Addr().String() + "/"
			s.say("the app talks to %s; the ambassador balances (p2c) over 3 backends", proxy.Addr())

			tr := &http.Transport{MaxIdleConnsPerHost: 8}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			// burst sends n GETs from 4 clients, fewer when ctx ends, and counts the answers by backend
			// and the failures.
			burst := func(n int) (map[string]int, int) {
				var mu sync.Mutex
				seen, failed := map[string]int{}, 0
				var wg sync.WaitGroup
				next := make(chan struct{})
				for range 4 {
					wg.Go(func() {
						for range next {
							var resp *http.Response
							req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
							if err == nil {
								resp, err = client.Do(req)
							}
							var body []byte
							if err == nil {
								body, _ = io.ReadAll(resp.Body)
								resp.Body.Close()
							}
							mu.Lock()
							if err != nil || resp.StatusCode != 200 {
								failed++
							} else {
								seen[strings.TrimSpace(string(body))]++
							}
							mu.Unlock()
						}
					})
				}
			send:
				for range n {
					select {
					case next <- struct{}{}:
					case <-ctx.Done():
						break send
					}
				}
				close(next)
				wg.Wait()
				return seen, failed
			}
			seen, failed := burst(300)
			s.say("300 GETs: %v, %d failed", seen, failed)
			backends[1].stop()
			s.say("killed web-1 (its listener and connections are gone)")
			seen, failed2 := burst(300)
			failed += failed2
			st, _ := cluster.Status()
			ejected := ""
			for _, e := range st {
				for _, b := range backends {
					if e.Ejected && b.addr == e.Addr {
						ejected = b.name
					}
				}
			}
			s.say("300 GETs: %v, %d failed (retried on the others); ejected: %s", seen, failed2, orNone(ejected))
			if err := backends[1].start(); err != nil {
				return "", err
			}
			if err := sleep(ctx, 600*time.Millisecond); err != nil { // past the 500ms ejection
				return "", err
			}
			seen, failed3 := burst(300)
			failed += failed3
			s.say("web-1 is back; after its ejection time: %v", seen)
			if err := proxy.SetSplits(ambassador.Split{Cluster: exp, Percent: 20}); err != nil {
				return "", err
			}
			seen, failed4 := burst(500)
			failed += failed4
			s.say("hot split change, 20%% to the experiment: %d of 500 went there", seen["experiment"])
			cancel()
			if err := <-done; err != nil {
				return "", err
			}
			if err := ctx.Err(); err != nil {
				return "", fmt.Errorf("GETs cut short (%d failed): %w", failed, context.Cause(ctx))
			}
			// Every GET is idempotent and has 2 retries on other backends: none may fail, not even
			// while web-1 is dead.
			if failed > 0 {
				return "", fmt.Errorf("%d of 1400 GETs failed", failed)
			}
			return fmt.Sprintf("1400 GETs, 1 backend killed and restarted, %d failed, experiment got %d/500", failed, seen["experiment"]), nil
		},
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// tourBackend is a tiny HTTP server answering its name, which can be killed and restarted.
type tourBackend struct {
	name, addr string
	mu         sync.Mutex
	srv        *http.Server
	done       chan struct{}
}

func startTourBackend(name string) (*tourBackend, error) {
	b := &tourBackend{name: name, addr: "127.0.0.1:0"}
	if err := b.start(); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *tourBackend) start() error {
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", b.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("backend %s: %w", b.name, err)
	}
	b.addr = ln.Addr().String()
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, b.name)
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return
		}
	}()
	b.mu.Lock()
	b.srv, b.done = srv, done
	b.mu.Unlock()
	return nil
}

func (b *tourBackend) stop() {
	b.mu.Lock()
	srv, done := b.srv, b.done
	b.srv = nil
	b.mu.Unlock()
	if srv != nil {
		srv.Close()
		<-done
	}
}
