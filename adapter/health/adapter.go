package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/podblocks/podblocks/lifecycle"
)

// Spec is one check of an Adapter.
type Spec struct {
	// Name names the check in probes and metrics; unique across all the Adapter's checks.
	Name    string
	Probe   lifecycle.Probe // lifecycle.Livez, Readyz or Startupz
	Checker Checker
	// Interval, when positive, runs the check in the background and answers probes from its last
	// result (caching); zero runs it on every probe request.
	Interval time.Duration
	// Timeout bounds one run (zero: lifecycle.DefaultCheckTimeout): a Checker still running then
	// counts as one failure against FailureThreshold, as the kubelet counts a probe timeout.
	Timeout time.Duration
	// FailureThreshold is how many consecutive failures turn a healthy check unhealthy (default
	// 1); SuccessThreshold how many consecutive successes turn it healthy again (default 1).
	FailureThreshold, SuccessThreshold int
}

// Adapter gives a container without probes Kubernetes-style ones: it runs Checkers with
// thresholds and caching, and exposes them as /livez, /readyz and /startupz checks of a lifecycle
// hook server (Register). A check starts unhealthy until its first success.
type Adapter struct {
	o      options
	checks []*thresholdCheck
	runs   *prometheus.CounterVec
	up     *prometheus.GaugeVec
	// running counts Checker calls still in flight, which may outlive a timed-out check; Close
	// waits for them, up to closeWait.
	running   sync.WaitGroup
	closeWait time.Duration
}

// registerMargin is added to a check's Timeout for the hook server's bound of the check (Register):
// the adapter's own bound (thresholdCheck.run) answers at Timeout, so a hang counts against the
// threshold; the hook server's is only a backstop and never cuts that verdict off.
const registerMargin = 500 * time.Millisecond

// execWaitDelay is how long an Exec check waits for its command's output to close after killing it.
const execWaitDelay = time.Second

type thresholdCheck struct {
	spec Spec
	a    *Adapter

	mu                  sync.Mutex
	healthy             bool
	failures, successes int
	lastErr             error
	lastRun             time.Time
	lastLatency         time.Duration
}

// Option configures an Adapter.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	logger     *zap.Logger
	registerer prometheus.Registerer
	now        func() time.Time
}

// WithLogger sets the logger (default zap.NewNop()); health transitions are logged at info.
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(o *options) {
		if l != nil {
			o.logger = l
		}
	})
}

// WithRegisterer registers podblocks_adapter_health_* metrics with r (nil: not registered).
func WithRegisterer(r prometheus.Registerer) Option {
	return optionFunc(func(o *options) { o.registerer = r })
}

// WithClock sets the clock used for the status page (default time.Now).
func WithClock(now func() time.Time) Option { return optionFunc(func(o *options) { o.now = now }) }

// New validates specs and returns an Adapter. It starts nothing.
func New(specs []Spec, opts ...Option) (*Adapter, error) {
	o := options{logger: zap.NewNop(), now: time.Now}
	for _, opt := range opts {
		opt.apply(&o)
	}
	a := &Adapter{o: o,
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podblocks_adapter_health_checks_total",
			Help: "Health check runs, by check and result (success, failure).",
		}, []string{"check", "result"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podblocks_adapter_health_up",
			Help: "Whether a health check is healthy after thresholds (1) or not (0).",
		}, []string{"check"}),
	}
	if err := validate(specs); err != nil {
		return nil, fmt.Errorf("health: %w", err)
	}
	for _, s := range specs {
		if s.FailureThreshold == 0 {
			s.FailureThreshold = 1
		}
		if s.SuccessThreshold == 0 {
			s.SuccessThreshold = 1
		}
		a.checks = append(a.checks, &thresholdCheck{spec: s, a: a})
		// A Checker that honours its ctx returns by its Timeout plus an Exec's WaitDelay.
		a.closeWait = max(a.closeWait, checkTimeout(s)+execWaitDelay+registerMargin)
		a.up.WithLabelValues(s.Name).Set(0)
	}
	if o.registerer != nil {
		for _, c := range []prometheus.Collector{a.runs, a.up} {
			if err := o.registerer.Register(c); err != nil {
				return nil, fmt.Errorf("health: register metrics: %w", err)
			}
		}
	}
	return a, nil
}

// validate refuses specs New cannot run.
func validate(specs []Spec) error {
	seen := map[string]string{} // check name -> its probe
	for i, s := range specs {
		switch {
		case s.Name == "":
			return fmt.Errorf("check %d: no name", i)
		case !utf8.ValidString(s.Name):
			return fmt.Errorf("check %d: name %q is not UTF-8", i, s.Name) // a label value
		case s.Checker == nil:
			return fmt.Errorf("check %q: no checker", s.Name)
		case s.Probe < lifecycle.Livez || s.Probe > lifecycle.Startupz:
			return fmt.Errorf("check %q: unknown probe %v", s.Name, s.Probe)
		case s.FailureThreshold < 0 || s.SuccessThreshold < 0 || s.Interval < 0 || s.Timeout < 0:
			return fmt.Errorf("check %q: negative threshold, interval or timeout", s.Name)
		case seen[s.Name] != "":
			// Names are unique across probes: each has one podblocks_adapter_health_* series.
			return fmt.Errorf("check %q: name already used by a %s check", s.Name, seen[s.Name])
		}
		seen[s.Name] = s.Probe.String()
	}
	return nil
}

// Register adds every check to srv under its probe. Call it before srv runs. The hook server
// bounds a check at its Timeout plus a margin (registerMargin, 500ms) that it never needs: the
// adapter answers at Timeout, a Checker still running then being one failure against the
// threshold.
func (a *Adapter) Register(srv *lifecycle.Server) error {
	for _, c := range a.checks {
		if err := srv.AddCheck(c.spec.Probe, lifecycle.Check{
			Name: c.spec.Name, Func: c.check, Timeout: checkTimeout(c.spec) + registerMargin, Interval: c.spec.Interval,
		}); err != nil {
			return err
		}
	}
	srv.AddStatus(a)
	return nil
}

// Check runs the named check once (with its thresholds) and returns its verdict.
func (a *Adapter) Check(ctx context.Context, name string) error {
	for _, c := range a.checks {
		if c.spec.Name == name {
			return c.check(ctx)
		}
	}
	return fmt.Errorf("health: no check named %q", name)
}

func (c *thresholdCheck) check(ctx context.Context) error {
	start := c.a.o.now()
	err := c.run(ctx)
	result := "success"
	if err != nil {
		result = "failure"
	}
	c.a.runs.WithLabelValues(c.spec.Name, result).Inc()

	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastRun, c.lastLatency = start, c.a.o.now().Sub(start)
	was := c.healthy
	if err != nil {
		c.lastErr = err
		c.successes = 0
		c.failures++
		if c.failures >= c.spec.FailureThreshold {
			c.healthy = false
		}
	} else {
		c.lastErr = nil
		c.failures = 0
		c.successes++
		if c.successes >= c.spec.SuccessThreshold {
			c.healthy = true
		}
	}
	if was != c.healthy {
		c.a.o.logger.Info("health changed", zap.String("check", c.spec.Name), zap.Bool("healthy", c.healthy), zap.Error(err))
	}
	up := 0.0
	if c.healthy {
		up = 1
	}
	c.a.up.WithLabelValues(c.spec.Name).Set(up)
	switch {
	case c.healthy:
		return nil
	case err != nil:
		return err
	default:
		return fmt.Errorf("%w: %d of %d successes needed", ErrUnhealthy, c.successes, c.spec.SuccessThreshold)
	}
}

// checkTimeout is the bound of one run of s's Checker.
func checkTimeout(s Spec) time.Duration {
	if s.Timeout == 0 {
		return lifecycle.DefaultCheckTimeout
	}
	return s.Timeout
}

// run runs the Checker once, bounded by the spec's Timeout: a Checker still running then (one
// that is slow to stop, like a command whose children hold its output open, or one that ignores
// its ctx) counts as one failure against the threshold, as the kubelet counts a probe timeout. The
// hook server's own bound of the check is later (Register), so this verdict is the answer.
func (c *thresholdCheck) run(ctx context.Context) error {
	timeout := checkTimeout(c.spec)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan error, 1) // buffered: the Checker may return after we stopped waiting
	c.a.running.Go(func() { done <- c.spec.Checker.Check(ctx) })
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("health: %s: timed out after %v", c.spec.Name, timeout)
	}
}

// Statusz is a table of the checks for the hook server's /statusz page.
func (a *Adapter) Statusz() (string, []string, [][]string) {
	rows := make([][]string, 0, len(a.checks))
	for _, c := range a.checks {
		c.mu.Lock()
		state, last, lastErr := "unhealthy", "never", ""
		if c.healthy {
			state = "healthy"
		}
		if !c.lastRun.IsZero() {
			last = c.lastRun.UTC().Format(time.RFC3339) + " (" + c.lastLatency.Round(time.Millisecond).String() + ")"
		}
		if c.lastErr != nil {
			lastErr = c.lastErr.Error()
		}
		rows = append(rows, []string{c.spec.Name, c.spec.Probe.String(), state, strconv.Itoa(c.failures), last, lastErr})
		c.mu.Unlock()
	}
	return "health adapter", []string{"check", "probe", "state", "consecutive failures", "last run", "last error"}, rows
}

// Close waits for Checker calls still running (a timed-out one ends once it honours its ctx), then
// releases checkers that hold connections (GRPC). Call it after the hook server stopped. The wait
// is bounded: by the longest check Timeout plus 1.5s (an Exec's WaitDelay and a margin); a Checker
// that ignores its ctx and still runs then is left running, and Close says so in its error.
func (a *Adapter) Close() error {
	var errs []error
	if len(a.checks) > 0 {
		waited := make(chan struct{})
		go func() {
			a.running.Wait()
			close(waited)
		}()
		t := time.NewTimer(a.closeWait)
		select {
		case <-waited:
		case <-t.C:
			errs = append(errs, fmt.Errorf("health: a Checker still runs %v after Close began (it ignores its ctx); not waiting for it", a.closeWait))
		}
		t.Stop()
	}
	for _, c := range a.checks {
		if cl, ok := c.spec.Checker.(io.Closer); ok {
			errs = append(errs, cl.Close())
		}
	}
	return errors.Join(errs...)
}

// Config is the YAML form of an Adapter's checks (examples/health-adapter reads it):
//
//	checks:
//	- name: mysql
//	  probe: readyz              # livez, readyz (default) or startupz
//	  exec: [mysql, -e, "SELECT 1"]
//	  interval: 5s
//	  timeout: 2s
//	  failure_threshold: 3
//	- {name: cache, probe: livez, redis: "127.0.0.1:6379"}
//	- {name: web, http: "http://127.0.0.1:8080/healthz"}
//	- {name: port, tcp: "127.0.0.1:9000"}
//	- {name: api, grpc: "127.0.0.1:50051", grpc_service: ""}
type Config struct {
	Checks []CheckConfig `yaml:"checks"`
}

// CheckConfig is one check of a Config; exactly one of Exec, TCP, HTTP, GRPC and Redis is set.
type CheckConfig struct {
	Name             string        `yaml:"name"`
	Probe            string        `yaml:"probe"`
	Exec             []string      `yaml:"exec"`
	TCP              string        `yaml:"tcp"`
	HTTP             string        `yaml:"http"`
	GRPC             string        `yaml:"grpc"`
	GRPCService      string        `yaml:"grpc_service"`
	Redis            string        `yaml:"redis"`
	RedisPassword    string        `yaml:"redis_password"`
	Interval         time.Duration `yaml:"interval"`
	Timeout          time.Duration `yaml:"timeout"`
	FailureThreshold int           `yaml:"failure_threshold"`
	SuccessThreshold int           `yaml:"success_threshold"`
}

// ParseConfig parses a Config (unknown fields are errors) into specs for New.
func ParseConfig(data []byte) ([]Spec, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("health: config: %w", err)
	}
	if len(c.Checks) == 0 {
		return nil, errors.New("health: config: checks: none configured")
	}
	var specs []Spec
	for i, cc := range c.Checks {
		s := Spec{Name: cc.Name, Interval: cc.Interval, Timeout: cc.Timeout,
			FailureThreshold: cc.FailureThreshold, SuccessThreshold: cc.SuccessThreshold}
		switch cc.Probe {
		case "", "readyz":
			s.Probe = lifecycle.Readyz
		case "livez":
			s.Probe = lifecycle.Livez
		case "startupz":
			s.Probe = lifecycle.Startupz
		default:
			return nil, fmt.Errorf("health: config: checks[%d].probe: unknown %q", i, cc.Probe)
		}
		n := 0
		if len(cc.Exec) > 0 {
			n++
			s.Checker = &Exec{Command: cc.Exec}
		}
		if cc.TCP != "" {
			n++
			s.Checker = &TCP{Addr: cc.TCP}
		}
		if cc.HTTP != "" {
			n++
			s.Checker = &HTTP{URL: cc.HTTP}
		}
		if cc.GRPC != "" {
			n++
			s.Checker = &GRPC{Addr: cc.GRPC, Service: cc.GRPCService}
		}
		if cc.Redis != "" {
			n++
			s.Checker = &RedisPing{Addr: cc.Redis, Password: cc.RedisPassword}
		}
		if n != 1 {
			return nil, fmt.Errorf("health: config: checks[%d]: want exactly one of exec, tcp, http, grpc, redis; got %d", i, n)
		}
		specs = append(specs, s)
	}
	if err := validate(specs); err != nil { // what New would refuse, refused here with the config's context
		return nil, fmt.Errorf("health: config: %w", err)
	}
	return specs, nil
}

// LoadConfig reads a Config file.
func LoadConfig(path string) ([]Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("health: read config: %w", err)
	}
	return ParseConfig(b)
}
