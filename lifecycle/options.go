package lifecycle

import (
	"net"
	"os"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Defaults of the hook server and the drain sequence.
const (
	DefaultAdminAddr        = "127.0.0.1:8081"
	DefaultPropagationDelay = 5 * time.Second
	DefaultGracePeriod      = 30 * time.Second // Kubernetes' terminationGracePeriodSeconds default
	DefaultSafetyMargin     = 2 * time.Second
)

// Option configures a Server or an App. Each option's documentation says which it applies to; the
// other ignores it.
type Option interface{ apply(*options) }

type options struct {
	addr         string
	listener     net.Listener
	logger       *zap.Logger
	registerer   prometheus.Registerer
	gatherer     prometheus.Gatherer
	pprof        bool
	level        *zap.AtomicLevel
	propagation  time.Duration
	grace        time.Duration
	margin       time.Duration
	signals      []os.Signal
	version      string
	statusReload time.Duration
}

func defaultOptions() options {
	return options{
		addr:        DefaultAdminAddr,
		logger:      zap.NewNop(),
		propagation: DefaultPropagationDelay,
		grace:       DefaultGracePeriod,
		margin:      DefaultSafetyMargin,
		signals:     []os.Signal{syscall.SIGTERM, os.Interrupt},
	}
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithAddr sets the address the hook server listens on (Server). Default DefaultAdminAddr, which is
// loopback only: expose it beyond the pod deliberately.
func WithAddr(addr string) Option { return optionFunc(func(o *options) { o.addr = addr }) }

// WithListener makes the hook server serve on l instead of listening on its address (Server). The
// server closes l when it stops.
func WithListener(l net.Listener) Option { return optionFunc(func(o *options) { o.listener = l }) }

// WithLogger sets the logger (Server, App). Default zap.NewNop().
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(o *options) {
		if l != nil {
			o.logger = l
		}
	})
}

// WithRegisterer registers the package's metrics with r (Server, App, Shedder). Nil, the default,
// means the metrics exist but are not registered.
func WithRegisterer(r prometheus.Registerer) Option {
	return optionFunc(func(o *options) { o.registerer = r })
}

// WithGatherer adds g to what /metrics serves (Server). By default /metrics serves a private registry
// with the process and Go runtime collectors only.
func WithGatherer(g prometheus.Gatherer) Option {
	return optionFunc(func(o *options) { o.gatherer = g })
}

// WithPprof serves net/http/pprof under /debug/pprof/ (Server). Off by default: profiles expose
// internals and cost CPU.
func WithPprof(on bool) Option { return optionFunc(func(o *options) { o.pprof = on }) }

// WithLevel serves level at /logz for GET and PUT (Server). Without it /logz answers 404.
func WithLevel(level zap.AtomicLevel) Option {
	return optionFunc(func(o *options) { o.level = &level })
}

// WithVersion sets the version shown on /statusz (Server).
func WithVersion(v string) Option { return optionFunc(func(o *options) { o.version = v }) }

// WithPropagationDelay sets how long a draining App keeps serving after it reports not ready, so that
// endpoint removal reaches every load balancer (App). Default DefaultPropagationDelay.
func WithPropagationDelay(d time.Duration) Option {
	return optionFunc(func(o *options) { o.propagation = d })
}

// WithGracePeriod sets the termination grace period the drain must fit in (App); match the pod's
// terminationGracePeriodSeconds. Default DefaultGracePeriod.
func WithGracePeriod(d time.Duration) Option { return optionFunc(func(o *options) { o.grace = d }) }

// WithSafetyMargin sets how much of the grace period is kept back for stopping the group, so that the
// kubelet's SIGKILL does not land mid-shutdown (App). Default DefaultSafetyMargin.
func WithSafetyMargin(d time.Duration) Option { return optionFunc(func(o *options) { o.margin = d }) }

// WithSignals sets the signals that start a drain (App); a second one stops at once. Default
// SIGTERM and SIGINT. No signals: the App only drains on /prestop, /quitquitquit or Drain.
func WithSignals(sig ...os.Signal) Option { return optionFunc(func(o *options) { o.signals = sig }) }

// WithStatusRefresh makes the /statusz page reload itself every d (Server). Zero, the default, means
// no automatic refresh.
func WithStatusRefresh(d time.Duration) Option {
	return optionFunc(func(o *options) { o.statusReload = d })
}
