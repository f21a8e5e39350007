package scrape_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/podblocks/podblocks/adapter/scrape"
)

// TestJSONPushMaxAge: with MaxAge, a document older than that fails the probe (probe_success
// 0) until the next push; without it, a document is served forever.
func TestJSONPushMaxAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, err := scrape.ParseJSONConfig([]byte("metrics:\n- name: app_x\n  path: '{.x}'\n"))
		if err != nil {
			t.Fatal(err)
		}
		aging := &scrape.JSONPush{Config: cfg, MaxAge: time.Minute}
		forever := &scrape.JSONPush{Config: cfg}
		push := func(p *scrape.JSONPush) {
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, httptest.NewRequest("POST", "/push", strings.NewReader(`{"x":1}`)))
			if rec.Code != 204 {
				t.Fatalf("push: %d %s", rec.Code, rec.Body)
			}
		}
		push(aging)
		push(forever)
		ctx := context.Background()
		time.Sleep(time.Minute)
		if s, err := aging.Probe(ctx, ""); err != nil || len(s) != 1 {
			t.Errorf("at MaxAge: %d samples, error %v", len(s), err)
		}
		time.Sleep(time.Nanosecond)
		if _, err := aging.Probe(ctx, ""); !errors.Is(err, scrape.ErrStale) {
			t.Errorf("past MaxAge: error %v, want ErrStale", err)
		}
		if s, err := forever.Probe(ctx, ""); err != nil || len(s) != 1 {
			t.Errorf("without MaxAge: %d samples, error %v", len(s), err)
		}
		push(aging)
		if s, err := aging.Probe(ctx, ""); err != nil || len(s) != 1 {
			t.Errorf("after a new push: %d samples, error %v", len(s), err)
		}
	})
}
