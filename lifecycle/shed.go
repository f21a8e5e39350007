package lifecycle

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Priority is a class of work, lowest first. Under load a Shedder sheds Sheddable work first, then
// Default; Critical work is shed only at the hard limit.
type Priority int

// The priority classes.
const (
	Sheddable Priority = iota
	Default
	Critical
)

var priorityNames = [...]string{"sheddable", "default", "critical"}

func (p Priority) String() string {
	if p < Sheddable || p > Critical {
		return "Priority(" + strconv.Itoa(int(p)) + ")"
	}
	return priorityNames[p]
}

// ParsePriority parses a class name ("critical", "default", "sheddable", any case) or a Kubernetes
// pod priority value (an integer: 1000000000 and above, the system classes, is Critical; below zero is
// Sheddable; else Default).
func ParsePriority(s string) (Priority, error) {
	s = strings.TrimSpace(s)
	for i, n := range priorityNames {
		if strings.EqualFold(s, n) {
			return Priority(i), nil
		}
	}
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return Default, fmt.Errorf("lifecycle: priority %q: want critical, default, sheddable or an integer", s)
	}
	switch {
	case v >= 1_000_000_000:
		return Critical, nil
	case v < 0:
		return Sheddable, nil
	}
	return Default, nil
}

// ProcessPriority returns the process' own priority from the environment variable POD_PRIORITY, or
// Default when it is unset. The downward API cannot expose the pod's spec.priority to an environment
// variable; set it from a label or annotation instead, e.g. valueFrom.fieldRef.fieldPath
// metadata.labels['podblocks.io/priority'] (a class name or an integer), or set it directly.
func ProcessPriority(getenv func(string) string) (Priority, error) {
	v := getenv("POD_PRIORITY")
	if v == "" {
		return Default, nil
	}
	return ParsePriority(v)
}

// DefaultPriorityHeader is the request header a Shedder reads a request's class from.
const DefaultPriorityHeader = "X-Priority"

// Shedder admits work by priority under a concurrency limit. Sheddable work is admitted while fewer
// than half the limit is in flight, Default work while less than 90%, Critical work up to the limit;
// so as load grows the lowest classes are shed first. Admission never blocks: shed work is answered
// at once (HTTP 503 with Retry-After) so that the caller can go elsewhere.
type Shedder struct {
	caps       [3]int64
	inflight   atomic.Int64
	header     string
	classify   func(*http.Request) (Priority, error)
	retryAfter time.Duration

	regs []prometheus.Registerer // from WithShedRegisterer: NewShedder registers the metrics with them

	admitted *prometheus.CounterVec
	shed     *prometheus.CounterVec
	active   *prometheus.GaugeVec
}

// ShedOption configures a Shedder.
type ShedOption interface{ applyShed(*Shedder) }

type shedOptionFunc func(*Shedder)

func (f shedOptionFunc) applyShed(s *Shedder) { f(s) }

// WithClassifier sets how the middleware finds a request's class. The default reads the
// X-Priority header (a class name), and uses Default when it is absent.
func WithClassifier(f func(*http.Request) (Priority, error)) ShedOption {
	return shedOptionFunc(func(s *Shedder) { s.classify = f })
}

// WithRetryAfter sets the Retry-After the middleware sends with a 503. Default 1 s.
func WithRetryAfter(d time.Duration) ShedOption {
	return shedOptionFunc(func(s *Shedder) { s.retryAfter = d })
}

// WithShedRegisterer registers the Shedder's metrics with r; NewShedder returns the error if that
// fails (names already registered), leaving no metric of the Shedder registered anywhere. Nil
// (default) does not register them.
func WithShedRegisterer(r prometheus.Registerer) ShedOption {
	return shedOptionFunc(func(s *Shedder) {
		if r != nil {
			s.regs = append(s.regs, r)
		}
	})
}

// NewShedder returns a Shedder that admits at most limit units of work at once.
func NewShedder(limit int, opts ...ShedOption) (*Shedder, error) {
	if limit < 1 {
		return nil, fmt.Errorf("lifecycle: shedder limit %d: must be at least 1", limit)
	}
	s := &Shedder{
		caps:       [3]int64{max(1, int64(limit)/2), max(1, int64(limit)*9/10), int64(limit)},
		header:     DefaultPriorityHeader,
		retryAfter: time.Second,
		admitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podblocks_lifecycle_shed_admitted_total", Help: "Work admitted by the shedder, by priority class.",
		}, []string{"class"}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podblocks_lifecycle_shed_rejected_total", Help: "Work shed, by priority class.",
		}, []string{"class"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podblocks_lifecycle_shed_inflight", Help: "Admitted work in flight, by priority class.",
		}, []string{"class"}),
	}
	s.classify = s.fromHeader
	for _, o := range opts {
		o.applyShed(s)
	}
	for i, r := range s.regs {
		if err := register(r, s.admitted, s.shed, s.active); err != nil {
			for _, done := range s.regs[:i] {
				unregister(done, s.admitted, s.shed, s.active)
			}
			return nil, err
		}
	}
	return s, nil
}

func (s *Shedder) fromHeader(r *http.Request) (Priority, error) {
	v := r.Header.Get(s.header)
	if v == "" {
		return Default, nil
	}
	for i, n := range priorityNames {
		if strings.EqualFold(v, n) {
			return Priority(i), nil
		}
	}
	return Default, fmt.Errorf("unknown priority class %q in %s; use critical, default or sheddable", v, s.header)
}

// Acquire admits one unit of work of class p, or returns ErrShed. Every nil return must be paired
// with a Release of the same class.
func (s *Shedder) Acquire(p Priority) error {
	if p < Sheddable || p > Critical {
		p = Default
	}
	limit := s.caps[p]
	for {
		n := s.inflight.Load()
		if n >= limit {
			s.shed.WithLabelValues(priorityNames[p]).Inc()
			return ErrShed
		}
		if s.inflight.CompareAndSwap(n, n+1) {
			s.admitted.WithLabelValues(priorityNames[p]).Inc()
			s.active.WithLabelValues(priorityNames[p]).Inc()
			return nil
		}
	}
}

// Release ends one unit of work admitted by Acquire(p).
func (s *Shedder) Release(p Priority) {
	if p < Sheddable || p > Critical {
		p = Default
	}
	s.inflight.Add(-1)
	s.active.WithLabelValues(priorityNames[p]).Dec()
}

// InFlight returns the admitted work in flight.
func (s *Shedder) InFlight() int { return int(s.inflight.Load()) }

// Middleware sheds requests by class: 400 for an unknown class, 503 with Retry-After when shed.
func (s *Shedder) Middleware(next http.Handler) http.Handler {
	retry := strconv.Itoa(max(1, int(s.retryAfter.Round(time.Second)/time.Second)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.classify(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := s.Acquire(p); err != nil {
			w.Header().Set("Retry-After", retry)
			http.Error(w, "overloaded: "+p.String()+" work is being shed; retry later", http.StatusServiceUnavailable)
			return
		}
		defer s.Release(p)
		next.ServeHTTP(w, r)
	})
}
