package health

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Checker checks one thing: nil is healthy, an error says why not. Implementations must honour
// ctx and be safe for concurrent use.
type Checker interface {
	Check(ctx context.Context) error
}

// CheckerFunc adapts a function to Checker.
type CheckerFunc func(ctx context.Context) error

// Check implements Checker.
func (f CheckerFunc) Check(ctx context.Context) error { return f(ctx) }

// ErrUnhealthy is what a check's error wraps when the target answered, but unhealthily.
var ErrUnhealthy = errors.New("health: unhealthy")

// Exec runs a command; exit status 0 is healthy (the book's mysql-health example runs a query
// this way). The command is killed when ctx ends.
type Exec struct {
	Command []string // program and arguments; required
	Env     []string // extra environment, KEY=VALUE
	Dir     string
}

// Check implements Checker. The error carries the exit status and the start of the output.
func (e *Exec) Check(ctx context.Context) error {
	if len(e.Command) == 0 {
		return errors.New("health: exec: no command")
	}
	cmd := exec.CommandContext(ctx, e.Command[0], e.Command[1:]...)
	cmd.Env = append(cmd.Environ(), e.Env...)
	cmd.Dir = e.Dir
	var out limitedBuffer
	out.max = 512
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = execWaitDelay
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("health: exec %s: %w", e.Command[0], ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("%w: exec %s: exit status %d: %s", ErrUnhealthy, e.Command[0], ee.ExitCode(),
			strings.TrimSpace(out.String()))
	}
	return fmt.Errorf("health: exec %s: %w", e.Command[0], err)
}

type limitedBuffer struct {
	mu  sync.Mutex
	b   bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TCP is healthy when a TCP connection to Addr (host:port) opens.
type TCP struct {
	Addr string
}

// Check implements Checker.
func (t *TCP) Check(ctx context.Context) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return fmt.Errorf("health: tcp %s: %w", t.Addr, err)
	}
	return c.Close()
}

// HTTP is healthy when a GET of URL answers a status that Healthy accepts (default: 200-399,
// as Kubernetes' httpGet probe).
type HTTP struct {
	URL string
	// Header is sent with the request, as the kubelet's httpGet httpHeaders: a "Host" header sets
	// the request's host, and User-Agent ("podblocks-health/1") and Accept ("*/*") are set only
	// when Header has none (an empty value sends none).
	Header  http.Header
	Healthy func(status int) bool
	// Client sends the request. nil means a client that does what the kubelet's httpGet probe
	// does: it does not verify TLS certificates (an https probe checks that the server answers,
	// not who it is), uses no proxy and no keep-alive, follows up to 10 redirects to the same host,
	// and takes a redirect to another host as the answer (its 3xx status counts as healthy).
	Client *http.Client
}

// probeClient is the client of an HTTP check without one (see HTTP.Client).
var probeClient = &http.Client{
	Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // as the kubelet's probes
		DisableKeepAlives: true,
		Proxy:             nil,
	},
	CheckRedirect: probeRedirect,
}

// probeRedirect follows a redirect to the same host, up to 10, and stops at one to another host
// (the kubelet's redirect checker).
func probeRedirect(req *http.Request, via []*http.Request) error {
	if req.URL.Hostname() != via[0].URL.Hostname() {
		return http.ErrUseLastResponse
	}
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return nil
}

// setProbeHeaders gives req the header and sets its defaults as the kubelet's httpGet probe does:
// a "Host" header is the request's host; User-Agent is "podblocks-health/1" and Accept "*/*"
// unless header has them (an empty Accept sends none, an empty User-Agent none either).
func setProbeHeaders(req *http.Request, header http.Header) {
	for k, v := range header {
		k = textproto.CanonicalMIMEHeaderKey(k)
		req.Header[k] = append(req.Header[k], v...)
	}
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header.Set("User-Agent", "podblocks-health/1")
	}
	if _, ok := req.Header["Accept"]; !ok {
		req.Header.Set("Accept", "*/*")
	} else if req.Header.Get("Accept") == "" {
		req.Header.Del("Accept")
	}
	if host := req.Header.Get("Host"); host != "" {
		req.Host = host
	}
}

// Check implements Checker.
func (h *HTTP) Check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL, nil)
	if err != nil {
		return fmt.Errorf("health: http %s: %w", h.URL, err)
	}
	setProbeHeaders(req, h.Header)
	c := h.Client
	if c == nil {
		c = probeClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("health: http %s: %w", h.URL, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	ok := resp.StatusCode >= 200 && resp.StatusCode < 400
	if h.Healthy != nil {
		ok = h.Healthy(resp.StatusCode)
	}
	if !ok {
		return fmt.Errorf("%w: http %s: status %d", ErrUnhealthy, h.URL, resp.StatusCode)
	}
	return nil
}

// GRPC is healthy when the gRPC health protocol (grpc.health.v1.Health/Check) answers SERVING
// for Service ("" is the server as a whole). The connection is plaintext.
type GRPC struct {
	Addr    string
	Service string

	mu   sync.Mutex
	conn *grpc.ClientConn
}

// Check implements Checker. The connection is kept between checks; Close releases it.
func (g *GRPC) Check(ctx context.Context) error {
	g.mu.Lock()
	if g.conn == nil {
		c, err := grpc.NewClient(g.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			g.mu.Unlock()
			return fmt.Errorf("health: grpc %s: %w", g.Addr, err)
		}
		g.conn = c
	}
	conn := g.conn
	g.mu.Unlock()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: g.Service})
	if err != nil {
		return fmt.Errorf("health: grpc %s: %w", g.Addr, err)
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("%w: grpc %s service %q: %s", ErrUnhealthy, g.Addr, g.Service, s)
	}
	return nil
}

// Close closes the kept connection.
func (g *GRPC) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn == nil {
		return nil
	}
	err := g.conn.Close()
	g.conn = nil
	return err
}

// RedisPing is healthy when a redis server answers PING with PONG (after AUTH when Password is
// set; a LOADING reply is unhealthy).
type RedisPing struct {
	Addr               string
	Username, Password string
}

// Check implements Checker.
func (r *RedisPing) Check(ctx context.Context) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", r.Addr)
	if err != nil {
		return fmt.Errorf("health: redis %s: %w", r.Addr, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	br := bufio.NewReader(c)
	do := func(args ...string) (string, error) {
		var b strings.Builder
		b.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
		for _, a := range args {
			b.WriteString("$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n")
		}
		if _, err := io.WriteString(c, b.String()); err != nil {
			return "", err
		}
		line, err := br.ReadString('\n')
		return strings.TrimRight(line, "\r\n"), err
	}
	if r.Password != "" {
		args := []string{"AUTH", r.Password}
		if r.Username != "" {
			args = []string{"AUTH", r.Username, r.Password}
		}
		reply, err := do(args...)
		if err != nil {
			return fmt.Errorf("health: redis %s: %w", r.Addr, err)
		}
		if reply != "+OK" {
			return fmt.Errorf("%w: redis %s: AUTH: %s", ErrUnhealthy, r.Addr, strings.TrimPrefix(reply, "-"))
		}
	}
	reply, err := do("PING")
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("health: redis %s: %w", r.Addr, ctx.Err())
		}
		return fmt.Errorf("health: redis %s: %w", r.Addr, err)
	}
	if reply != "+PONG" {
		return fmt.Errorf("%w: redis %s: PING: %s", ErrUnhealthy, r.Addr, strings.TrimPrefix(reply, "-"))
	}
	return nil
}
