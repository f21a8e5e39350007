package ambassador

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Option configures a Cluster, a TCPProxy or an HTTPProxy. Each constructor uses the options that
// concern it and ignores the rest, so one option list can configure a whole ambassador.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	logger *zap.Logger
	reg    prometheus.Registerer
	name   string

	// cluster
	balancer       NewBalancer
	health         *HealthCheck
	outlier        Outlier
	panicThreshold int
	maxConcurrent  int
	maxPending     int

	// proxies
	connectTimeout time.Duration
	idleTimeout    time.Duration
	maxConns       int
	retries        int
	budget         RetryBudget
	perTryTimeout  time.Duration
	bodyIdle       time.Duration
	key            KeyFunc
	splits         []Split
	readHeader     time.Duration
	readTimeout    time.Duration
	writeTimeout   time.Duration
	maxHeaderBytes int
	maxIdlePerEp   int
	eventLoops     int // -1: the proxy's default (defaultHTTPLoops, GOMAXPROCS for TCP)
}

func defaults() config {
	return config{
		logger:         zap.NewNop(),
		name:           "default",
		balancer:       NewRoundRobin,
		outlier:        DefaultOutlier,
		panicThreshold: 50,
		maxConcurrent:  1024,
		maxPending:     1024,
		connectTimeout: 5 * time.Second,
		idleTimeout:    10 * time.Minute,
		maxConns:       10000,
		retries:        2,
		budget:         DefaultRetryBudget,
		perTryTimeout:  15 * time.Second,
		bodyIdle:       60 * time.Second,
		readHeader:     10 * time.Second,
		readTimeout:    60 * time.Second,
		writeTimeout:   5 * time.Minute,
		maxHeaderBytes: 64 << 10,
		maxIdlePerEp:   512,
		eventLoops:     -1,
	}
}

func newConfig(opts []Option) config {
	c := defaults()
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

// WithLogger sets the logger (default zap.NewNop()).
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(c *config) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithRegisterer registers the metrics with r (nil, the default: metrics exist but are not registered).
// Each Cluster registers its per-endpoint series under the constant label cluster=<name>.
func WithRegisterer(r prometheus.Registerer) Option {
	return optionFunc(func(c *config) { c.reg = r })
}

// WithName names a Cluster (the "cluster" label on metrics and logs; default "default").
func WithName(name string) Option { return optionFunc(func(c *config) { c.name = name }) }

// WithBalancer sets a Cluster's balancer (default NewRoundRobin).
func WithBalancer(b NewBalancer) Option { return optionFunc(func(c *config) { c.balancer = b }) }

// WithHealthCheck turns on active health checking for a Cluster (default: off; endpoints are
// healthy until outlier detection ejects them).
func WithHealthCheck(h HealthCheck) Option { return optionFunc(func(c *config) { c.health = &h }) }

// WithOutlier sets passive outlier detection (default DefaultOutlier; ConsecutiveFailures < 0
// turns it off).
func WithOutlier(o Outlier) Option { return optionFunc(func(c *config) { c.outlier = o }) }

// WithPanicThreshold sets the percentage of available endpoints below which a Cluster balances
// over all endpoints, ejected or not (default 50; 0 turns panic mode off).
func WithPanicThreshold(pct int) Option {
	return optionFunc(func(c *config) { c.panicThreshold = pct })
}

// WithCircuitBreaker limits each endpoint to maxConcurrent requests in flight, with at most
// maxPending more waiting for a slot; beyond that requests fail fast with ErrOverloaded (HTTP 503)
// unless another endpoint can take them. Defaults 1024 and 1024; maxConcurrent 0 means no limit,
// maxPending 0 that no request waits. NewCluster refuses negative limits.
func WithCircuitBreaker(maxConcurrent, maxPending int) Option {
	return optionFunc(func(c *config) { c.maxConcurrent, c.maxPending = maxConcurrent, maxPending })
}

// WithConnectTimeout bounds each dial to an endpoint (default 5s).
func WithConnectTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.connectTimeout = d })
}

// WithIdleTimeout closes proxied TCP connections with no traffic either way for this long (they are
// closed between d and 2d after the last byte; default 10m), and idle HTTP keep-alive connections.
func WithIdleTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.idleTimeout = d })
}

// WithMaxConns limits a proxy's concurrent client connections (default 10000); connections beyond
// it are closed at once.
func WithMaxConns(n int) Option { return optionFunc(func(c *config) { c.maxConns = n }) }

// WithRetries sets how many times an idempotent request without a body (or a TCP dial) is retried
// (default 2), within the retry budget: on another endpoint, or on one already tried when every
// other is at its circuit-breaker limits or unavailable.
func WithRetries(n int) Option { return optionFunc(func(c *config) { c.retries = n }) }

// WithRetryBudget sets the retry budget (default DefaultRetryBudget).
func WithRetryBudget(b RetryBudget) Option { return optionFunc(func(c *config) { c.budget = b }) }

// WithPerTryTimeout bounds one try of an HTTP request until its response headers (default 15s;
// 0 means none); a try that times out is retried elsewhere if allowed, else answered 504. The
// response body, which may stream for as long as the endpoint likes, is bounded by
// WithBodyIdleTimeout instead.
func WithPerTryTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.perTryTimeout = d })
}

// WithBodyIdleTimeout bounds each wait of an HTTPProxy for more of an endpoint's response body,
// once its headers are in (default 60s, as nginx's proxy_read_timeout; 0 means none). An endpoint silent that long mid-body has its answer cut short: the
// client gets what came and then the end of its connection. Only the endpoint's silence counts:
// while the client has not taken the part before, the wait is the client's, bounded by the write
// timeout (WithServerTimeouts). A stream with gaps (server-sent events, long polls) needs a bound
// above its longest gap, or 0.
func WithBodyIdleTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.bodyIdle = d })
}

// WithKey sets the HTTP request key extractor for hashing balancers (default ClientIPKey).
func WithKey(k KeyFunc) Option { return optionFunc(func(c *config) { c.key = k }) }

// WithSplits routes matching requests to experiment clusters (see Split). The proxy runs the
// clusters named here; clusters introduced later with SetSplits must be run by the caller.
func WithSplits(s ...Split) Option {
	return optionFunc(func(c *config) { c.splits = append([]Split(nil), s...) })
}

// WithServerTimeouts sets the HTTP listener's header-read, read and write timeouts (defaults 10s,
// 60s, 5m; 0 means none) and its header size limit (default 64 KiB). Keep-alive connections idle
// longer than WithIdleTimeout are closed.
func WithServerTimeouts(readHeader, read, write time.Duration, maxHeaderBytes int) Option {
	return optionFunc(func(c *config) {
		c.readHeader, c.readTimeout, c.writeTimeout, c.maxHeaderBytes = readHeader, read, write, maxHeaderBytes
	})
}

// WithMaxIdlePerEndpoint bounds the idle upstream keep-alive connections kept per endpoint (default
// 512). An HTTPProxy with event loops keeps a pool per loop and one for the goroutine path, each
// bounded so: up to (loops+1)*n idle connections per endpoint.
func WithMaxIdlePerEndpoint(n int) Option { return optionFunc(func(c *config) { c.maxIdlePerEp = n }) }

// WithEventLoops sets how many event loops (each on an OS thread of its own) an HTTPProxy serves
// HTTP/1.x requests of the common shape on: a request without a body that is no upgrade, to an
// endpoint answering with a Content-Length (or no) body. The loops relay such requests with
// non-blocking sockets and their own epoll, which bounds every connection's wait by one pass of
// its loop; everything else (request bodies, upgrades, h2c, chunked or close-delimited answers,
// heads over 8 KiB) goes on on the goroutine path with the same behaviour. Idle upstream
// connections are kept per loop, up to WithMaxIdlePerEndpoint each. Default (and any negative n):
// one loop per two Ps (GOMAXPROCS when Run starts, halved and rounded up), so that a loop's thread
// finds a CPU free when its connections have bytes: the app and the endpoints on the same machine
// need CPUs too. (A TCPProxy's default is GOMAXPROCS loops.) 0 turns the loops off. Linux only;
// elsewhere every request takes the goroutine path.
func WithEventLoops(n int) Option { return optionFunc(func(c *config) { c.eventLoops = n }) }
