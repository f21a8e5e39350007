package scrape_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/podblocks/podblocks/adapter/scrape"
	"github.com/podblocks/podblocks/adaptertest"
)

func TestJSONPush(t *testing.T) {
	cfg, err := scrape.ParseJSONConfig([]byte(jsonConfig))
	if err != nil {
		t.Fatal(err)
	}
	push := &scrape.JSONPush{Config: cfg, MaxBytes: 4096}
	e, err := scrape.New(push, scrape.WithTarget("pushed"))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/push", push)
	mux.Handle("/metrics", e.Handler())
	srv := httptest.NewServer(mux)
	defer srv.Close()

	v, err := adaptertest.Scrape(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v["probe_success"] != 0 {
		t.Errorf("before a push: probe_success = %v, want 0", v["probe_success"])
	}
	for _, tc := range []struct {
		method, body string
		code         int
	}{
		{"GET", "", http.StatusMethodNotAllowed},
		{"POST", "{nope", http.StatusBadRequest},
		{"POST", `{"a":"` + strings.Repeat("x", 5000) + `"}`, http.StatusRequestEntityTooLarge},
		{"POST", doc, http.StatusNoContent},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+"/push", strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s %.20q: %d, want %d", tc.method, tc.body, resp.StatusCode, tc.code)
		}
	}
	v, err = adaptertest.Scrape(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v["app_requests_total"] != 1234 || v[`app_queue_depth{queue="email"}`] != 3 || v["probe_success"] != 1 {
		t.Errorf("after the push: %v", v)
	}
}
