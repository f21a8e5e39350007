// Package promscrape scrapes a Prometheus gatherer in tests the way Prometheus does, through
// promhttp, so that a collector that fails makes the scrape fail as it would in production.
package promscrape

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Lines scrapes g in the text format and returns the lines that begin with one of prefixes, in
// the scrape's order, without their newlines. A scrape that does not answer 200 fails the test.
func Lines(t testing.TB, g prometheus.Gatherer, prefixes ...string) []string {
	t.Helper()
	rec := httptest.NewRecorder()
	h := promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError})
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Errorf("scrape: %d %s", rec.Code, rec.Body)
	}
	var out []string
	for l := range strings.Lines(rec.Body.String()) {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, strings.TrimSuffix(l, "\n"))
				break
			}
		}
	}
	return out
}
