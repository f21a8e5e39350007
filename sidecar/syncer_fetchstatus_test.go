package sidecar

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHTTPArchiveSourceStatusError: an archive server answering other than 200 or 304 gives an
// error naming the archive fetch and the status, ErrFetchStatus; the old code's said "webhook
// status", the Reloader's webhook error, though no webhook was called.
func TestHTTPArchiveSourceStatusError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "gone", http.StatusNotFound)
	}))
	defer srv.Close()
	_, err := (&HTTPArchiveSource{URL: srv.URL + "/site.tgz"}).Fetch(context.Background(), "", t.TempDir())
	if err == nil || strings.Contains(err.Error(), "webhook") || !strings.Contains(err.Error(), "404 Not Found") {
		t.Errorf("Fetch = %v, want an archive fetch error with the status, not a webhook's", err)
	}
	if !errors.Is(err, ErrFetchStatus) || errors.Is(err, ErrHookStatus) {
		t.Errorf("Fetch = %v, want ErrFetchStatus, not ErrHookStatus", err)
	}
}
