package ambassador

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"
)

// DNS is a Source that resolves a name on an interval: A/AAAA records of Name with Port, or, with
// SRV set, the SRV records of Name — the shapes a Kubernetes headless Service has. Of the SRV
// records only those of the lowest priority with a target that resolves are used (RFC 2782: the
// others are backups), their targets resolved, with their weights (see Resolve). Endpoints that
// disappear are dropped from balancing and drain. A failed lookup keeps the last set; an SRV
// target the resolver says does not exist is left out (and logged) while the others update, but
// any other failure to resolve a target (a timeout, a server failure) fails the whole lookup, so
// the last set is kept rather than a live target dropped.
type DNS struct {
	Name     string
	Port     int           // for A/AAAA lookups
	SRV      bool          // look up SRV records of Name instead
	Interval time.Duration // between lookups; 0 means 5s
	Resolver *net.Resolver // nil means net.DefaultResolver
	Logger   *zap.Logger   // nil means no logging

	n notifier
}

// Endpoints implements Source.
func (d *DNS) Endpoints() ([]Endpoint, <-chan struct{}) { return d.n.get() }

func (d *DNS) firstLoad() <-chan struct{} { return d.n.firstLoad() }

// Run resolves at once and then every Interval until ctx ends. A Cluster over d is Ready once the
// first lookup has ended, within max(Interval, 1s): with the set it found, or, when it failed,
// with no endpoints (requests get 503, connections are closed) until a later lookup succeeds.
func (d *DNS) Run(ctx context.Context) error {
	if d.Name == "" {
		return &ConfigError{Field: "dns name", Reason: "is empty"}
	}
	if !d.SRV && (d.Port <= 0 || d.Port > 65535) {
		return &ConfigError{Field: "dns port", Reason: "must be 1..65535"}
	}
	iv := d.Interval
	if iv <= 0 {
		iv = 5 * time.Second
	}
	log := d.Logger
	if log == nil {
		log = zap.NewNop()
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		lctx, cancel := context.WithTimeout(ctx, max(iv, time.Second))
		eps, err := d.Resolve(lctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("dns lookup; keeping the last endpoints", zap.String("name", d.Name), zap.Error(err))
		case err == nil:
			if d.n.set(eps) {
				log.Info("dns endpoints changed", zap.String("name", d.Name), zap.Int("endpoints", len(eps)))
			}
		}
		d.n.markLoaded()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Resolve does one lookup and returns the endpoints it finds. An SRV target's endpoints have its
// SRV weight as it is (at most MaxWeight), weight 0 counting as 1: a small share beside larger
// weights, as RFC 2782 intends, and an equal one when every record has weight 0. Weights that do
// not change with the rest of the set keep a ring's keys in place when one target goes away.
func (d *DNS) Resolve(ctx context.Context) ([]Endpoint, error) {
	r := d.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	if !d.SRV {
		ips, err := r.LookupIPAddr(ctx, d.Name)
		if err != nil {
			return nil, fmt.Errorf("lookup %s: %w", d.Name, err)
		}
		eps := make([]Endpoint, 0, len(ips))
		for _, ip := range ips {
			eps = append(eps, Endpoint{Addr: net.JoinHostPort(ip.IP.String(), strconv.Itoa(d.Port))})
		}
		return eps, nil
	}
	_, srvs, err := r.LookupSRV(ctx, "", "", d.Name)
	if err != nil {
		return nil, fmt.Errorf("lookup srv %s: %w", d.Name, err)
	}
	// RFC 2782: only the lowest priority is used, while any of its targets can be reached (here:
	// resolved); net.LookupSRV sorts the records by priority.
	var missing []error
	for len(srvs) > 0 {
		n := 1
		for n < len(srvs) && srvs[n].Priority == srvs[0].Priority {
			n++
		}
		eps, left, err := resolveTargets(ctx, r, srvs[:n])
		if err != nil {
			return nil, fmt.Errorf("lookup srv %s: %w", d.Name, err)
		}
		missing = append(missing, left...)
		if len(eps) > 0 {
			if len(missing) > 0 && d.Logger != nil {
				d.Logger.Warn("dns srv targets left out", zap.String("name", d.Name), zap.Error(errors.Join(missing...)))
			}
			return eps, nil
		}
		srvs = srvs[n:]
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("lookup srv %s: no target resolves: %w", d.Name, errors.Join(missing...))
	}
	return []Endpoint{}, nil // no records: no endpoints
}

// resolveTargets resolves the targets of srvs, records of one priority, into endpoints. A target
// gets its SRV weight as it is, weight 0 counting as 1: beside larger weights a small share, as
// RFC 2782 intends, and an equal one when every record has weight 0. A target that does not exist
// (the resolver says not found) or has port 0 is left out, and left says why; any other failure
// (a timeout, a server failure, a transport error) is err, and fails the whole lookup, so that a
// live target is not dropped for a lost answer.
func resolveTargets(ctx context.Context, r *net.Resolver, srvs []*net.SRV) (eps []Endpoint, left []error, err error) {
	for _, s := range srvs {
		if s.Port == 0 {
			left = append(left, fmt.Errorf("target %s: port 0", s.Target))
			continue
		}
		ips, err := r.LookupIPAddr(ctx, s.Target)
		if err != nil {
			if de := (*net.DNSError)(nil); errors.As(err, &de) && de.IsNotFound && ctx.Err() == nil {
				left = append(left, fmt.Errorf("lookup %s: %w", s.Target, err))
				continue
			}
			return nil, nil, fmt.Errorf("lookup %s: %w", s.Target, err)
		}
		w := max(1, int(s.Weight))
		for _, ip := range ips {
			eps = append(eps, Endpoint{Addr: net.JoinHostPort(ip.IP.String(), strconv.Itoa(int(s.Port))), Weight: w})
		}
	}
	return eps, left, nil
}

// File is a Source read from a JSON or YAML file holding a list of endpoints, each either
// "host:port" or {"addr": "host:port", "weight": N} (see ParseEndpointsFile). The file's directory
// is watched, so atomic renames and Kubernetes ConfigMap symlink swaps are seen; a file that fails
// to parse (an empty one included) keeps the last good set (and is logged).
//
// Writers must replace the file atomically: write a new file in the same directory and rename it
// over the old one (as a ConfigMap volume does). A file rewritten in place can be read half
// written; an empty or unparsable one is refused, but a YAML list cut at a line break still parses,
// as a shorter list. An address listed more than once is one endpoint with the largest of its
// weights (see Static.Set).
type File struct {
	Path   string
	Logger *zap.Logger // nil means no logging
	// Poll re-reads the file on this interval as well, for file systems without inotify (0: 10s).
	Poll time.Duration

	n    notifier
	last []byte
}

// Endpoints implements Source.
func (f *File) Endpoints() ([]Endpoint, <-chan struct{}) { return f.n.get() }

func (f *File) firstLoad() <-chan struct{} { return f.n.firstLoad() }

// ErrBadFile is returned by ParseEndpointsFile for contents that are not an endpoint list.
var ErrBadFile = errors.New("ambassador: bad endpoints file")

// ParseEndpointsFile parses a JSON or YAML list of endpoints, each "host:port" or {"addr":
// "host:port", "weight": N} with nothing else (a misspelt key is an error, not a default). An empty
// document (an empty or blank file, only comments, null) is an error, as a file caught half
// written would be: a list with no endpoints is spelt []. Addresses and weights are checked as
// ParseEndpoints checks them; an address listed more than once is one endpoint, at the first
// place it is listed, with the largest of its weights (see Static.Set).
func ParseEndpointsFile(data []byte) ([]Endpoint, error) {
	var raw []yaml.Node
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadFile, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("%w: no list (write [] for no endpoints)", ErrBadFile)
	}
	eps := make([]Endpoint, 0, len(raw))
	for i, n := range raw {
		var ep Endpoint
		switch n.Kind {
		case yaml.ScalarNode:
			ep.Addr = n.Value
		case yaml.MappingNode:
			for k := 0; k+1 < len(n.Content); k += 2 {
				if key := n.Content[k].Value; key != "addr" && key != "weight" {
					return nil, fmt.Errorf("%w: item %d: unknown key %q (want addr and weight)", ErrBadFile, i, key)
				}
			}
			if err := n.Decode(&ep); err != nil {
				return nil, fmt.Errorf("%w: item %d: %v", ErrBadFile, i, err)
			}
		default:
			return nil, fmt.Errorf("%w: item %d is neither \"host:port\" nor {addr, weight}", ErrBadFile, i)
		}
		if ep.Weight < 0 || ep.Weight > MaxWeight {
			return nil, fmt.Errorf("%w: item %d: weight %d is not 0..%d", ErrBadFile, i, ep.Weight, MaxWeight)
		}
		if err := validAddr(ep.Addr); err != nil {
			return nil, fmt.Errorf("%w: item %d: %v", ErrBadFile, i, err)
		}
		eps = addEndpoint(eps, ep)
	}
	return eps, nil
}

// Load reads and parses the file once, updating the set if it parses. Run calls it; do not call
// it while Run runs.
func (f *File) Load() error {
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return fmt.Errorf("read endpoints: %w", err)
	}
	if f.last != nil && bytes.Equal(data, f.last) {
		return nil
	}
	eps, err := ParseEndpointsFile(data)
	if err != nil {
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	f.last = data
	f.n.set(eps)
	return nil
}

// Run loads the file and reloads it on every change until ctx ends. A missing or bad file at
// start is an error (a Cluster's Run returns it, and its proxy's Run too); later failures keep the
// last good set. A Cluster over f is Ready once the first load has succeeded.
func (f *File) Run(ctx context.Context) error {
	log := f.Logger
	if log == nil {
		log = zap.NewNop()
	}
	// Watch before the first load: a change between the two is then either in what Load reads or
	// an event, never missed until the next poll.
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch endpoints: %w", err)
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(f.Path)); err != nil {
		return fmt.Errorf("watch endpoints: %w", err)
	}
	if err := f.Load(); err != nil {
		return err
	}
	f.n.markLoaded()
	poll := f.Poll
	if poll <= 0 {
		poll = 10 * time.Second
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.Errors:
			log.Warn("watch endpoints", zap.Error(err))
		case <-w.Events:
		case <-t.C:
		}
		if err := f.Load(); err != nil {
			log.Warn("reload endpoints; keeping the last set", zap.Error(err))
		}
	}
}
