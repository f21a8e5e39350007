package workqueue_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueuetest"
)

// TestAPIRefusesBadQuery: a query that does not parse (bad percent-encoding, a ';'), a parameter
// the endpoint does not take (a misspelt one) and a repeated parameter are 400 naming the problem,
// as an unknown field of a JSON body is; nothing is added.
func TestAPIRefusesBadQuery(t *testing.T) {
	q, srv := newServed(t, workqueuetest.Config{LeaseDuration: 10e9})
	for _, tc := range []struct{ method, path, reason string }{
		{"POST", "items?key=%ZZ", "query"},
		{"POST", "items?key=a;b", "semicolon"},
		{"POST", "items?kye=x", `"kye"`},
		{"POST", "items?priority=1&priority=2", `"priority" given 2 times`},
		{"POST", "items?delay=1s&delay=%", "query"},
		{"POST", "lease?wait=0&wait=1s", `"wait" given 2 times`},
		{"POST", "lease?wiat=1s", `"wiat"`},
		{"POST", "cancel?poll=a&pol=b", `"pol"`},
		{"GET", "dead?max=1&max=2", `"max" given 2 times`},
		{"GET", "dead?mx=1", `"mx"`},
		{"GET", "stats?x=1", `"x"`},
		{"POST", "ack?lease=1.1", `"lease"`},
	} {
		code, b := apiCall(t, srv, tc.method, tc.path, `{"lease":"1.1"}`)
		var e struct{ Error string }
		if err := json.Unmarshal([]byte(b), &e); err != nil || code != http.StatusBadRequest || !strings.Contains(e.Error, tc.reason) {
			t.Errorf("%s %s: %d %q, want 400 naming %s", tc.method, tc.path, code, b, tc.reason)
		}
	}
	if st, err := q.Stats(context.Background()); err != nil || st != (workqueue.Stats{}) {
		t.Errorf("after refused adds: stats %+v, %v; want an empty queue", st, err)
	}
	// Known parameters, each once, and an empty query still work.
	for _, p := range []string{"items?key=k&delay=0s&priority=3", "items?", "items"} {
		if code, b := apiCall(t, srv, "POST", p, "x"); code != http.StatusCreated {
			t.Errorf("POST %s: %d %q, want 201", p, code, b)
		}
	}
}

// TestAPIAddBodyReadError: a body that cannot be read (a malformed chunk) is the client's fault:
// 400, not 500, and not logged as a queue error.
func TestAPIAddBodyReadError(t *testing.T) {
	q := newMemory(t, workqueuetest.Config{LeaseDuration: 10e9})
	core, logs := observer.New(zapcore.DebugLevel)
	api, err := workqueue.NewAPI(q, workqueue.WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	conn, err := net.DialTimeout("tcp", srv.Listener.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "POST %sitems HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n", workqueue.APIPrefix)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("add with a malformed chunk: %d, want 400", resp.StatusCode)
	}
	for _, e := range logs.All() {
		if e.Level >= zapcore.WarnLevel {
			t.Errorf("logged %s %q %v: a client's broken body is not a queue error", e.Level, e.Message, e.ContextMap())
		}
	}
	if st, _ := q.Stats(context.Background()); st != (workqueue.Stats{}) {
		t.Errorf("stats %+v after a broken add, want empty", st)
	}
}
