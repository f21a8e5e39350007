package sidecar_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/podblocks/podblocks/sidecar"
	"github.com/podblocks/podblocks/sidecartest"
)

func decodeShipped(t *testing.T, data []byte) []sidecartest.Shipped {
	t.Helper()
	var out []sidecartest.Shipped
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var r struct{ File, Line string }
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, sidecartest.Shipped{File: r.File, Line: r.Line})
	}
	return out
}

func TestWriterSinkConformance(t *testing.T) {
	sidecartest.TestSink(t, func(t *testing.T) (sidecar.Sink, func() []sidecartest.Shipped) {
		var buf bytes.Buffer
		return sidecar.NewWriterSink(&buf), func() []sidecartest.Shipped { return decodeShipped(t, buf.Bytes()) }
	})
}

func TestFileSinkConformance(t *testing.T) {
	sidecartest.TestSink(t, func(t *testing.T) (sidecar.Sink, func() []sidecartest.Shipped) {
		path := filepath.Join(t.TempDir(), "out.jsonl")
		s, err := sidecar.OpenFileSink(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, func() []sidecartest.Shipped {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			return decodeShipped(t, data)
		}
	})
}

func TestHTTPSinkConformance(t *testing.T) {
	sidecartest.TestSink(t, func(t *testing.T) (sidecar.Sink, func() []sidecartest.Shipped) {
		var mu sync.Mutex
		var body bytes.Buffer
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Content-Type") != "application/x-ndjson" {
				http.Error(w, "want ndjson", http.StatusUnsupportedMediaType)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			_, _ = io.Copy(&body, r.Body)
		}))
		t.Cleanup(srv.Close)
		s, err := sidecar.NewHTTPSink(srv.URL, sidecar.WithHTTPClient(srv.Client()))
		if err != nil {
			t.Fatal(err)
		}
		return s, func() []sidecartest.Shipped {
			mu.Lock()
			defer mu.Unlock()
			return decodeShipped(t, body.Bytes())
		}
	})
}
