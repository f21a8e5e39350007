package workqueue_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/workqueue"
)

func FuzzParseLease(f *testing.F) {
	for _, s := range []string{"1.1", "18446744073709551615.7", "", ".", "1.", ".1", "1.0", "1.-1", "a.b", "999999.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, attempt, err := workqueue.ParseLease(s)
		if err != nil {
			return
		}
		if attempt < 1 {
			t.Fatalf("ParseLease(%q) accepted attempt %d", s, attempt)
		}
		// What parses must round-trip to a token that parses the same.
		id2, attempt2, err := workqueue.ParseLease(workqueue.FormatLease(id, attempt))
		if err != nil || id2 != id || attempt2 != attempt {
			t.Fatalf("round trip of %q: %d.%d, %v", s, id2, attempt2, err)
		}
	})
}

// FuzzAPI sends arbitrary bodies and queries to the API: it must answer (never panic) with a
// 2xx or a 4xx, and the queue keeps working.
func FuzzAPI(f *testing.F) {
	f.Add("ack", "", `{"lease":"1.1"}`)
	f.Add("nack", "", `{"lease":"1.1","delay":"1s"}`)
	f.Add("items", "key=a&delay=1s&priority=2", "payload")
	f.Add("items", "delay=-1s", "")
	f.Add("lease", "wait=1ms", "")
	f.Add("extend", "", `{"lease":""}`)
	f.Add("bury", "", `{"lease":"1.1","reason":"x"}`)
	f.Fuzz(func(t *testing.T, path, query, body string) {
		q, _ := workqueue.NewMemory()
		defer q.Close()
		api, _ := workqueue.NewAPI(q, workqueue.WithMaxWait(time.Millisecond))
		req := httptest.NewRequest("POST", "/", strings.NewReader(body))
		req.URL.Path = workqueue.APIPrefix + path
		req.URL.RawQuery = query
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("POST %s?%s %q: %d %s", path, query, body, rec.Code, rec.Body)
		}
		if _, err := q.Add(context.Background(), []byte("after"), workqueue.AddOptions{}); err != nil {
			t.Fatalf("queue broken after the request: %v", err)
		}
	})
}
