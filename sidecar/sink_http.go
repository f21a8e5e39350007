package sidecar

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"
)

// HTTPSink POSTs records as JSON lines (Content-Type application/x-ndjson) to a URL, in bodies of at
// most 1 MiB. A batch is retried with backoff until the server answers 2xx or ctx ends, so a down
// server stops the Tailer (backpressure): memory stays bounded by one batch, nothing is dropped.
// Delivery is at-least-once.
type HTTPSink struct {
	url     string
	client  *http.Client
	backoff Backoff
	log     *zap.Logger
	maxBody int
	buf     []byte
}

// NewHTTPSink returns a sink posting to rawURL. Options: WithHTTPClient, WithBackoff, WithLogger.
func NewHTTPSink(rawURL string, opts ...Option) (*HTTPSink, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &ConfigError{Field: "url", Reason: fmt.Sprintf("%q is not an http(s) URL", rawURL)}
	}
	o := buildOptions(opts)
	return &HTTPSink{url: rawURL, client: o.httpClient, backoff: o.backoff, log: o.logger.Named("httpsink"), maxBody: 1 << 20}, nil
}

// Write implements Sink. It is not safe for concurrent use (the Tailer calls it from one goroutine).
func (s *HTTPSink) Write(ctx context.Context, recs []Record) error {
	for len(recs) > 0 {
		s.buf = s.buf[:0]
		n := 0
		for n < len(recs) && (n == 0 || len(s.buf) < s.maxBody) {
			s.buf = AppendJSON(s.buf, recs[n])
			n++
		}
		if err := s.post(ctx); err != nil {
			return err
		}
		recs = recs[n:]
	}
	return nil
}

func (s *HTTPSink) post(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		err := s.try(ctx)
		if err == nil {
			return nil
		}
		s.log.Warn("post records", zap.Int("attempt", attempt), zap.Error(err))
		t := time.NewTimer(s.backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("post records: %w", ctx.Err())
		case <-t.C:
		}
	}
}

func (s *HTTPSink) try(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(s.buf))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%w: %s", ErrHTTPSinkStatus, resp.Status)
	}
	return nil
}
