package lifecycle_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podblocks/podblocks/lifecycle"
)

// propagationLag is how long clients keep sending to a pod after it is told to terminate (endpoint
// removal reaching kube-proxy and load balancers), in the drain benchmark's model.
const propagationLag = 300 * time.Millisecond

// BenchmarkDrain deletes a pod under keep-alive load and reports requests, failures and drain time,
// for podblocks' App (not ready, propagation delay, graceful shutdown) beside the usual hand-written
// handler that calls http.Server.Shutdown as soon as SIGTERM arrives. Clients keep sending for
// propagationLag after the termination starts, as they do in a cluster.
//
//	go test -run '^$' -bench Drain -benchtime 3x ./lifecycle/
func BenchmarkDrain(b *testing.B) {
	b.Run("podblocks", func(b *testing.B) { benchDrain(b, true) })
	b.Run("naive-shutdown", func(b *testing.B) { benchDrain(b, false) })
}

func benchDrain(b *testing.B, podblocks bool) {
	var sent, failed int64
	var drainTime time.Duration
	for range b.N {
		s, f, d := drainOnce(b, podblocks)
		sent, failed, drainTime = sent+s, failed+f, drainTime+d
	}
	b.ReportMetric(float64(sent)/float64(b.N), "requests/drain")
	b.ReportMetric(float64(failed)/float64(b.N), "failed/drain")
	b.ReportMetric(drainTime.Seconds()/float64(b.N), "drain-s")
}

func drainOnce(b *testing.B, podblocks bool) (sent, failed int64, took time.Duration) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/"
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Millisecond)
		io.WriteString(w, "ok")
	})
	var terminate func() // starts the termination
	done := make(chan struct{})
	if podblocks {
		hooksLn, _ := net.Listen("tcp", "127.0.0.1:0")
		app, err := lifecycle.NewApp(lifecycle.WithListener(hooksLn), lifecycle.WithSignals(),
			lifecycle.WithPropagationDelay(2*propagationLag), lifecycle.WithGracePeriod(10*time.Second))
		if err != nil {
			b.Fatal(err)
		}
		hs, _ := lifecycle.NewHTTPServerListener(&http.Server{Handler: handler}, ln)
		app.Add("app", hs)
		go func() { app.Run(context.Background()); close(done) }()
		<-app.Ready()
		terminate = app.Drain
	} else {
		srv := &http.Server{Handler: handler}
		go func() { srv.Serve(ln) }()
		terminate = func() {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				srv.Shutdown(ctx)
				cancel()
				close(done)
			}()
		}
	}
	var routed atomic.Bool
	routed.Store(true)
	var nSent, nFailed atomic.Int64
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for routed.Load() {
				nSent.Add(1)
				resp, err := c.Get(url)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					nFailed.Add(1)
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond) // steady load before the deletion
	start := time.Now()
	terminate()
	time.Sleep(propagationLag) // endpoints still point at the pod
	routed.Store(false)
	wg.Wait()
	<-done
	return nSent.Load(), nFailed.Load(), time.Since(start)
}
