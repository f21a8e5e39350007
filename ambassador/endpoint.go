package ambassador

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
)

// Endpoint is one upstream server: an address the proxies dial and a relative weight.
type Endpoint struct {
	// Addr is "host:port" for TCP and HTTP endpoints.
	Addr string `json:"addr" yaml:"addr"`
	// Weight is the endpoint's relative share of traffic, 1 to MaxWeight; 0 means 1. The parsers
	// refuse a weight above MaxWeight; balancers handed one directly count it as MaxWeight.
	Weight int `json:"weight,omitempty" yaml:"weight,omitempty"`
}

// MaxWeight is the largest endpoint weight: the largest DNS SRV weight (RFC 2782's 16 bits), so
// every SRV answer maps as it is, and small enough that no balancer's arithmetic overflows and a
// ring or maglev table over any weights builds in bounded time.
const MaxWeight = 65535

// weight returns e.Weight with 0 (or less) mapped to 1 and anything above MaxWeight to MaxWeight.
func (e Endpoint) weight() int {
	if e.Weight <= 0 {
		return 1
	}
	return min(e.Weight, MaxWeight)
}

// String returns "addr" or "addr*weight".
func (e Endpoint) String() string {
	if e.Weight <= 1 {
		return e.Addr
	}
	return fmt.Sprintf("%s*%d", e.Addr, e.Weight)
}

// Source supplies the current endpoint set and tells when it changes. Static, DNS and File implement
// it; a Source is a lifecycle component (Run refreshes it until ctx ends).
type Source interface {
	// Run keeps the set up to date until ctx ends; it returns nil then.
	Run(ctx context.Context) error
	// Endpoints returns the current set (never modified afterwards; callers must not modify it) and
	// a channel closed at the next change.
	Endpoints() ([]Endpoint, <-chan struct{})
}

// ParseEndpoints parses a comma-separated list "host:port[*weight],..." (spaces ignored). A port
// is a number from 1 to 65535 or a service name ("http"); a weight is 0 (counted as 1) to
// MaxWeight. An address listed more than once is one endpoint with the largest of its weights (see
// Static.Set).
func ParseEndpoints(s string) ([]Endpoint, error) {
	var eps []Endpoint
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		ep := Endpoint{Addr: part}
		if i := strings.LastIndexByte(part, '*'); i >= 0 {
			var w int
			if _, err := fmt.Sscanf(part[i+1:], "%d", &w); err != nil || w < 0 || fmt.Sprint(w) != part[i+1:] {
				return nil, &ConfigError{Field: "endpoints", Reason: fmt.Sprintf("bad weight in %q", part)}
			}
			if w > MaxWeight {
				return nil, &ConfigError{Field: "endpoints", Reason: fmt.Sprintf("weight in %q is above %d", part, MaxWeight)}
			}
			ep = Endpoint{Addr: part[:i], Weight: w}
		}
		if err := validAddr(ep.Addr); err != nil {
			return nil, &ConfigError{Field: "endpoints", Reason: err.Error()}
		}
		eps = addEndpoint(eps, ep)
	}
	return eps, nil
}

// validAddr refuses a that is not HOST:PORT with a host and a port a dial can use: a number from
// 1 to 65535 or a service name.
func validAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" || strings.ContainsAny(host, "/ \t") {
		return fmt.Errorf("address %q is not host:port", a)
	}
	if n, err := net.LookupPort("tcp", port); err != nil || n < 1 {
		return fmt.Errorf("address %q: port %q is not a number from 1 to 65535 nor a service name", a, port)
	}
	return nil
}

// addEndpoint appends ep to eps, or, when eps has its address already, gives that entry the larger
// of the two weights: the one rule every source follows for a repeated address (see Static.Set).
func addEndpoint(eps []Endpoint, ep Endpoint) []Endpoint {
	if i := slices.IndexFunc(eps, func(e Endpoint) bool { return e.Addr == ep.Addr }); i >= 0 {
		eps[i].Weight = max(eps[i].Weight, ep.Weight)
		return eps
	}
	return append(eps, ep)
}

// notifier is the snapshot-plus-change-channel half shared by every Source.
type notifier struct {
	mu      sync.Mutex
	eps     []Endpoint
	changed chan struct{}
	first   chan struct{} // closed by markLoaded
	loaded  bool
}

// firstLoad returns a channel closed once the source has made its first attempt at a set (see
// loader).
func (n *notifier) firstLoad() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.first == nil {
		n.first = make(chan struct{})
		if n.loaded {
			close(n.first)
		}
	}
	return n.first
}

// markLoaded closes firstLoad's channel; later calls do nothing.
func (n *notifier) markLoaded() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.loaded {
		return
	}
	n.loaded = true
	if n.first != nil {
		close(n.first)
	}
}

// loader is a Source whose Run fetches its set (DNS, File): a Cluster's Run waits for its first
// attempt before it is Ready. Sources without it (Static, the caller's own) have their set at once.
type loader interface{ firstLoad() <-chan struct{} }

func (n *notifier) get() ([]Endpoint, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.changed == nil {
		n.changed = make(chan struct{})
	}
	return n.eps, n.changed
}

// set replaces the set and wakes watchers when it differs; it reports whether it did.
func (n *notifier) set(eps []Endpoint) bool {
	eps = normalize(eps)
	n.mu.Lock()
	defer n.mu.Unlock()
	if slices.Equal(n.eps, eps) && n.eps != nil {
		return false
	}
	n.eps = eps
	if n.changed != nil {
		close(n.changed)
	}
	n.changed = make(chan struct{})
	return true
}

// normalize returns a sorted copy with each weight counted (0 as 1, at most MaxWeight) and a
// repeated address merged into one endpoint with the largest of its weights.
func normalize(eps []Endpoint) []Endpoint {
	out := make([]Endpoint, 0, len(eps))
	for _, e := range eps {
		e.Weight = e.weight()
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Endpoint) int { return strings.Compare(a.Addr, b.Addr) })
	merged := out[:0]
	for _, e := range out {
		if n := len(merged); n > 0 && merged[n-1].Addr == e.Addr {
			merged[n-1].Weight = max(merged[n-1].Weight, e.Weight)
			continue
		}
		merged = append(merged, e)
	}
	return merged
}

// Static is a Source whose set changes only through Set: the hot-reconfiguration entry point for
// callers that manage endpoints themselves. The zero value is an empty set, ready to use.
type Static struct{ n notifier }

// NewStatic returns a Static holding eps.
func NewStatic(eps ...Endpoint) *Static {
	s := &Static{}
	s.n.set(eps)
	return s
}

// Set replaces the endpoint set; watchers see the change at once. An address given more than once
// is one endpoint with the largest of its entries' weights, not their sum: the same endpoint listed
// twice (as Kubernetes allows an endpoint to be in more than one EndpointSlice at once, so a
// generator joining slices can write it twice) is still one endpoint of its weight. Every source
// (ParseEndpoints, File, DNS) follows this rule. In-flight requests and connections to endpoints
// that disappear finish normally (they drain).
func (s *Static) Set(eps ...Endpoint) { s.n.set(eps) }

// Endpoints implements Source.
func (s *Static) Endpoints() ([]Endpoint, <-chan struct{}) { return s.n.get() }

// Run implements Source: a Static has nothing to refresh, so it waits for ctx.
func (s *Static) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
