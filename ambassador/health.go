package ambassador

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Checker probes one endpoint; a nil error means healthy.
type Checker func(ctx context.Context, ep Endpoint) error

// HealthCheck configures active health checking. Zero durations and thresholds take the defaults
// named on each field.
type HealthCheck struct {
	Check              Checker       // default TCPCheck()
	Interval           time.Duration // between checks of one endpoint; default 5s
	Timeout            time.Duration // per check; default 2s
	HealthyThreshold   int           // consecutive successes to readmit; default 2
	UnhealthyThreshold int           // consecutive failures to remove; default 3
}

func (h HealthCheck) withDefaults() HealthCheck {
	if h.Check == nil {
		h.Check = TCPCheck()
	}
	if h.Interval <= 0 {
		h.Interval = 5 * time.Second
	}
	if h.Timeout <= 0 {
		h.Timeout = 2 * time.Second
	}
	if h.HealthyThreshold <= 0 {
		h.HealthyThreshold = 2
	}
	if h.UnhealthyThreshold <= 0 {
		h.UnhealthyThreshold = 3
	}
	return h
}

// TCPCheck returns a Checker that succeeds when a TCP connection to the endpoint opens.
func TCPCheck() Checker {
	return func(ctx context.Context, ep Endpoint) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", ep.Addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// HTTPCheck returns a Checker that GETs http://<endpoint><path> and expects status want (0 means
// any 2xx). client nil means a client without keep-alives.
func HTTPCheck(path string, want int, client *http.Client) Checker {
	if client == nil {
		client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	}
	return func(ctx context.Context, ep Endpoint) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ep.Addr+path, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if (want == 0 && resp.StatusCode/100 != 2) || (want != 0 && resp.StatusCode != want) {
			return fmt.Errorf("health check %s: status %d", path, resp.StatusCode)
		}
		return nil
	}
}

// Outlier configures passive outlier detection: an endpoint whose requests fail
// ConsecutiveFailures times in a row (connect errors, resets, timeouts, 5xx) is ejected for
// BaseEjection times the number of times it has been ejected, capped at MaxEjection, as long as
// no more than MaxEjectionPercent of the endpoints are ejected (one ejection is always allowed).
type Outlier struct {
	ConsecutiveFailures int // < 0 turns detection off; 0 means the default 5
	BaseEjection        time.Duration
	MaxEjection         time.Duration
	MaxEjectionPercent  int
}

// DefaultOutlier ejects after 5 consecutive failures for 10s, 20s, ... up to 5m, at most 50%.
var DefaultOutlier = Outlier{ConsecutiveFailures: 5, BaseEjection: 10 * time.Second, MaxEjection: 5 * time.Minute, MaxEjectionPercent: 50}

func (o Outlier) withDefaults() Outlier {
	d := DefaultOutlier
	if o.ConsecutiveFailures == 0 {
		o.ConsecutiveFailures = d.ConsecutiveFailures
	}
	if o.BaseEjection <= 0 {
		o.BaseEjection = d.BaseEjection
	}
	if o.MaxEjection <= 0 {
		o.MaxEjection = d.MaxEjection
	}
	if o.MaxEjectionPercent <= 0 {
		o.MaxEjectionPercent = d.MaxEjectionPercent
	}
	return o
}

// ejection returns how long the n-th ejection (n >= 1) lasts.
func (o Outlier) ejection(n int) time.Duration {
	d := o.BaseEjection * time.Duration(n)
	if d > o.MaxEjection || d <= 0 {
		d = o.MaxEjection
	}
	return d
}

// RetryBudget caps retries in flight at Percent of the requests in flight, but always allows
// MinConcurrent retries, so retries cannot multiply load during an outage (Envoy's retry budget).
type RetryBudget struct {
	Percent       int
	MinConcurrent int
}

// DefaultRetryBudget allows retries up to 20% of active requests, and at least 3 at a time.
var DefaultRetryBudget = RetryBudget{Percent: 20, MinConcurrent: 3}

// budget tracks requests and retries in flight against a RetryBudget.
type budget struct {
	RetryBudget
	active  atomic.Int64
	retries atomic.Int64
}

// tryRetry takes a retry slot if the budget allows; release it with doneRetry.
func (b *budget) tryRetry() bool {
	n := b.retries.Add(1)
	if n <= int64(b.MinConcurrent) || n*100 <= b.active.Load()*int64(b.Percent) {
		return true
	}
	b.retries.Add(-1)
	return false
}

func (b *budget) doneRetry() { b.retries.Add(-1) }
