package sidecar

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The HTTPSink's error for a non-2xx answer names the sink and the status, and is
// ErrHTTPSinkStatus; it used to read "sidecar: webhook status: 500 ...", the Reloader's webhook error.
func TestHTTPSinkStatusError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer srv.Close()
	s, err := NewHTTPSink(srv.URL, WithBackoff(func(int) time.Duration { return time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	s.buf = append(s.buf[:0], "{}\n"...)
	err = s.try(context.Background())
	if !errors.Is(err, ErrHTTPSinkStatus) || errors.Is(err, ErrHookStatus) {
		t.Errorf("error %v: want ErrHTTPSinkStatus, not ErrHookStatus", err)
	}
	if got := err.Error(); got != "sidecar: http sink: server answered: 500 Internal Server Error" || strings.Contains(got, "webhook") {
		t.Errorf("error text %q", got)
	}
}
