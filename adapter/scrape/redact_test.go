package scrape_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/adapter/scrape"
)

// TestTargetPasswordNotShown: a password in a target (a redis:// or http:// URL) appears in no
// log entry (at debug), no error and no answer of the handlers, whether the target is good,
// bad or unreachable.
func TestTargetPasswordNotShown(t *testing.T) {
	const secret = "s3cret"
	addr := startRedis(t, "--requirepass", secret)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/doc" {
			io.WriteString(w, `{"x":1}`)
			return
		}
		http.NotFound(w, r)
	}))
	defer src.Close()
	host := strings.TrimPrefix(src.URL, "http://")
	cfg, err := scrape.ParseJSONConfig([]byte("metrics:\n- name: app_x\n  path: '{.x}'\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		probe   scrape.Probe
		targets []string
	}{
		{&scrape.RedisInfo{}, []string{
			"redis://:s3cret@" + addr, "redis://default:s3cret@" + addr + "/0", // good
			"redis://:s3cret@" + addr + "/99", "redis://:s3cret@" + addr + "/x", // bad database
			"redis://:s3cret@" + closed, "redis://:s3cret@" + closed + "/x", "redis://:s3cret@" + closed + "?q",
			"redis://:s3cr et%zz@" + closed, "redis://:s3cret%zz@" + closed, "redis://:s3cret/x@" + closed,
			"redis://:a:s3cret/x@" + closed, "redis://s3cret@" + closed, "rediss://:s3cret@" + closed,
			"s3cret@" + closed, "redis://:s3cret@[::1", "redis://:s3cret@host:port",
		}},
		{&scrape.JSONProbe{Config: cfg}, []string{
			"http://u:s3cret@" + host + "/doc", "http://u:s3cret@" + host + "/missing", "http://s3cret@" + host + "/missing",
			"http://u:s3cret@" + closed + "/doc", "http://s3cret@" + closed + "/doc", "ftp://u:s3cret@" + host + "/doc",
			"http://u:s3cret%zz@" + host + "/doc", "http://u:s3cr et@" + host + "/doc", "http://u:s3cret/x@" + host + "/doc",
		}},
	} {
		core, logs := observer.New(zap.DebugLevel)
		e, err := scrape.New(tc.probe, scrape.WithLogger(zap.New(core)), scrape.WithAllowTargets(func(t string) bool {
			return !strings.Contains(t, "refused")
		}))
		if err != nil {
			t.Fatal(err)
		}
		for _, target := range tc.targets {
			for _, target := range []string{target, target + "/refused"} {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := e.Samples(ctx, target)
				cancel()
				if err != nil && strings.Contains(err.Error(), secret) {
					t.Errorf("Samples(%q) error shows the password: %v", target, err)
				}
				rec := httptest.NewRecorder()
				e.ProbeHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/probe?target="+url.QueryEscape(target), nil))
				if strings.Contains(rec.Body.String(), secret) {
					t.Errorf("ProbeHandler(%q) answer shows the password: %d %s", target, rec.Code, rec.Body)
				}
				h, err := scrape.New(tc.probe, scrape.WithLogger(zap.New(core)), scrape.WithTarget(target))
				if err != nil {
					t.Fatal(err)
				}
				rec = httptest.NewRecorder()
				h.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
				if strings.Contains(rec.Body.String(), secret) {
					t.Errorf("Handler(%q) answer shows the password: %d %s", target, rec.Code, rec.Body)
				}
			}
		}
		if logs.Len() == 0 {
			t.Error("no log entries: the failed probes were not logged")
		}
		for _, l := range logs.All() {
			if s := fmt.Sprint(l.Message, l.ContextMap()); strings.Contains(s, secret) {
				t.Errorf("log entry shows the password: %s", s)
			}
		}
	}
}
