package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestServeAnswersUnknownPathsInJSON: serve answers a path it does not serve, inside the API's
// prefix or not, and a wrong method with the API's JSON errors, not ServeMux's plain text.
func TestServeAnswersUnknownPathsInJSON(t *testing.T) {
	_, url := startServe(t, "-backend", "memory", "-http", "127.0.0.1:0")
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/api/v1/queue/lease", 405},
		{"GET", "/api/v1/queue/nope", 404},
		{"GET", "/nope", 404},
		{"GET", "/healthz", 200},
	} {
		req, _ := http.NewRequest(tc.method, url+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s %s: %d %q, want %d", tc.method, tc.path, resp.StatusCode, b, tc.code)
			continue
		}
		if tc.code == 200 {
			continue
		}
		var e struct{ Error string }
		if err := json.Unmarshal(b, &e); err != nil || !strings.Contains(e.Error, tc.path) {
			t.Errorf("%s %s: %d %q, want {\"error\":...} naming the path", tc.method, tc.path, resp.StatusCode, b)
		}
	}
}
