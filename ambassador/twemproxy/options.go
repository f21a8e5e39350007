package twemproxy

import (
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Option configures a Server.
type Option interface{ apply(*options) }

type options struct {
	log                *zap.Logger
	reg                prometheus.Registerer
	statsAddr          string
	clientIdleTimeout  time.Duration
	clientWriteTimeout time.Duration
	source             string
	// wrapConn, set by tests only, wraps each client connection the pools accept.
	wrapConn func(net.Conn) net.Conn
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

func defaultOptions() *options {
	return &options{
		log:                zap.NewNop(),
		clientIdleTimeout:  time.Hour,
		clientWriteTimeout: 30 * time.Second,
		source:             "podblocks",
	}
}

// WithLogger sets the logger (default: zap.NewNop()).
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(o *options) {
		if l != nil {
			o.log = l.Named("twemproxy")
		}
	})
}

// WithRegisterer registers the proxy's Prometheus metrics with r (default nil: the metrics exist,
// readable through Collector, but are not registered).
func WithRegisterer(r prometheus.Registerer) Option {
	return optionFunc(func(o *options) { o.reg = r })
}

// WithStatsAddr serves nutcracker's stats JSON on addr (for example "127.0.0.1:22222"): every
// connection gets one JSON document and is closed, as with nutcracker's -s/-a. addr is bound as a
// pool's listen address is, as nutcracker binds it (0.0.0.0 takes the port on IPv4 only). Default:
// no stats listener (Stats still returns the document).
func WithStatsAddr(addr string) Option {
	return optionFunc(func(o *options) { o.statsAddr = addr })
}

// WithClientIdleTimeout closes client connections that send nothing for d (default one hour;
// 0 disables it, as nutcracker has no such timeout).
func WithClientIdleTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.clientIdleTimeout = d })
}

// WithClientWriteTimeout closes a client connection whose replies cannot be written within d
// (default 30s; 0 disables it).
func WithClientWriteTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.clientWriteTimeout = d })
}

// WithSource sets the "source" field of the stats JSON (nutcracker puts the hostname there;
// default "podblocks").
func WithSource(s string) Option {
	return optionFunc(func(o *options) { o.source = s })
}
