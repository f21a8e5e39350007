//go:build linux

package ambassador

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHTTPLoopSendRing serves requests on an event loop writing through io_uring and with
// write(2) alone: four keep-alive clients each make 100 GETs of bodies of varied sizes, and a
// client that waits before it reads a 4 MiB answer fills its socket buffers, so writes come back
// with EAGAIN and wait for EPOLLOUT. Every answer must arrive whole either way, and the counters
// must show which path the writes took.
func TestHTTPLoopSendRing(t *testing.T) {
	for _, tc := range sendRingCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup(t)
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
				w.Header().Set("Content-Length", strconv.Itoa(n))
				w.Write(bytes.Repeat([]byte{'a' + byte(n%26)}, n))
			}))
			defer backend.Close()
			cl, err := NewCluster(NewStatic(Endpoint{Addr: strings.TrimPrefix(backend.URL, "http://")}))
			if err != nil {
				t.Fatal(err)
			}
			p, err := NewHTTPProxy("127.0.0.1:0", cl, WithEventLoops(1))
			if err != nil {
				t.Fatal(err)
			}
			runProxy(t, p)
			base := "http://" + p.Addr().String() + "/"
			tr := &http.Transport{MaxIdleConnsPerHost: 4}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}

			var wg sync.WaitGroup
			errs := make(chan error, 5)
			for i := range 4 {
				wg.Go(func() {
					for j := range 100 {
						n := (i*37 + j*101) % 5000
						resp, err := c.Get(base + strconv.Itoa(n))
						if err != nil {
							errs <- err
							return
						}
						body, err := io.ReadAll(resp.Body)
						resp.Body.Close()
						if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, bytes.Repeat([]byte{'a' + byte(n%26)}, n)) {
							errs <- fmt.Errorf("client %d, GET /%d: %d, %d bytes, %v", i, n, resp.StatusCode, len(body), err)
							return
						}
					}
				})
			}
			wg.Go(func() {
				const n = 4 << 20
				resp, err := c.Get(base + strconv.Itoa(n))
				if err != nil {
					errs <- err
					return
				}
				defer resp.Body.Close()
				time.Sleep(300 * time.Millisecond)
				body, err := io.ReadAll(resp.Body)
				if err != nil || !bytes.Equal(body, bytes.Repeat([]byte{'a' + byte(n%26)}, n)) {
					errs <- fmt.Errorf("GET /%d after a wait: %d bytes, %v", n, len(body), err)
				}
			})
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			writes := statuszCount("writes through io_uring on event loops", p)
			enters := statuszCount("io_uring_enter calls on event loops", p)
			answered := statuszCount("answered by event loops", p)
			t.Logf("%d answered by the loop, %d writes through io_uring in %d io_uring_enter calls", answered, writes, enters)
			if answered < 4*100 {
				t.Errorf("%d requests answered by the event loop, want at least %d", answered, 4*100)
			}
			if tc.off && (writes != 0 || enters != 0) {
				t.Errorf("write(2) path: %d writes through io_uring, %d io_uring_enter calls; want 0", writes, enters)
			}
			if !tc.off && (writes < 2*4*100 || enters == 0) {
				t.Errorf("io_uring path: %d writes through io_uring in %d calls; want at least %d", writes, enters, 2*4*100)
			}
		})
	}
}
