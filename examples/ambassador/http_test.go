package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/ambassadortest"
	"github.com/podblocks/podblocks/internal/cmdline/cmdlinetest"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/internal/loopback"
	"github.com/podblocks/podblocks/internal/syncbuf"
)

// TestMain is the package's only TestMain (the nutcracker tests share it).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start runs a subcommand until the test ends and waits until it serves on listen.
func start(t *testing.T, run func(context.Context, []string, io.Writer) error, listen string, args ...string) *syncbuf.Buffer {
	t.Helper()
	out, done := launch(t, run, append([]string{"-listen", listen}, args...)...)
	ok := ambassadortest.WaitFor(t.Context(), 15*time.Second, func() bool {
		select {
		case err := <-done:
			done <- err
			return true
		default:
		}
		c, err := net.Dial("tcp", listen)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if !ok {
		t.Fatalf("not listening on %s", listen)
	}
	return out
}

// launch runs a subcommand with args until the test ends, when it wants run to have returned nil.
// It returns the subcommand's stdout and a channel that has run's result once it returns early
// (put it back after a look: cleanup waits on it).
func launch(t *testing.T, run func(context.Context, []string, io.Writer) error, args ...string) (*syncbuf.Buffer, chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run = %v, want nil", err)
		}
	})
	return out, done
}

func TestHTTPSubcommand(t *testing.T) {
	b1, b2 := ambassadortest.NewHTTPBackend(t, "b1"), ambassadortest.NewHTTPBackend(t, "b2")
	listen := freeport.TCP(t)
	out := start(t, runHTTPContext, listen, "-backends", "http://"+b1.Addr+","+b2.Addr, "-balancer", "p2c")
	seen := map[string]int{}
	for range 20 {
		seen[backendOf(t, listen, "/", "", "")]++
	}
	if seen["b1"] == 0 || seen["b2"] == 0 {
		t.Errorf("responses %v, want both backends", seen)
	}
	if !ambassadortest.WaitFor(t.Context(), 5*time.Second, func() bool { return strings.Contains(out.String(), "listening on "+listen) }) {
		t.Errorf("stdout %q, want the listening line", out.String())
	}
	http.DefaultClient.CloseIdleConnections()
}

// With -listen HOST:0 the listening line names the port the proxy got, which a client can reach;
// it used to print the :0 it was given.
func TestListeningLineNamesThePort(t *testing.T) {
	b := ambassadortest.NewHTTPBackend(t, "b")
	out, _ := launch(t, runHTTPContext, "-listen", "127.0.0.1:0", "-backends", b.Addr)
	line := regexp.MustCompile(`ambassador: listening on (127\.0\.0\.1:(\d+))\n`)
	var m []string
	if !ambassadortest.WaitFor(t.Context(), 15*time.Second, func() bool { m = line.FindStringSubmatch(out.String()); return m != nil }) {
		t.Fatalf("stdout %q, want a listening line with an address", out.String())
	}
	if m[2] == "0" {
		t.Fatalf("listening line %q names port 0, not the port the proxy got", m[0])
	}
	if got := backendOf(t, m[1], "/", "", ""); got != "b" {
		t.Errorf("through the address the line names: answered by %q, want b", got)
	}
	http.DefaultClient.CloseIdleConnections()
}

// backendOf sends GET path, with header name: value when name is not empty, to the proxy on
// listen, and returns the name of the backend that answered.
func backendOf(t *testing.T, listen, path, name, value string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", "http://"+listen+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if name != "" {
		req.Header.Set(name, value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %q, %v", path, resp.Status, body, err)
	}
	return strings.TrimSpace(string(body))
}

// TestRingKey: -balancer ring hashes what -key names, by default the request path, so that a
// sidecar's requests (every one from 127.0.0.1) spread over the backends while each key keeps to
// one; with -key header:NAME, that header's value (here on one path). The old code had no -key
// and hashed the client's IP address, so one backend took all, and it refused a URL with a
// *WEIGHT, which the usage offers.
func TestRingKey(t *testing.T) {
	b1, b2 := ambassadortest.NewHTTPBackend(t, "b1"), ambassadortest.NewHTTPBackend(t, "b2")
	backends := "http://" + b1.Addr + "*2," + b2.Addr
	for _, tc := range []struct {
		name   string
		args   []string
		header string // the header that carries the key; none: the path does
	}{
		{"default", nil, ""},
		{"path", []string{"-key", "path"}, ""},
		{"header", []string{"-key", "header:X-User"}, "X-User"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			listen := freeport.TCP(t)
			start(t, runHTTPContext, listen, append([]string{"-backends", backends, "-balancer", "ring"}, tc.args...)...)
			seen := map[string]int{}
			for i := range 32 {
				path, value := fmt.Sprintf("/item/%d", i), ""
				if tc.header != "" {
					path, value = "/", fmt.Sprintf("user-%d", i)
				}
				first := backendOf(t, listen, path, tc.header, value)
				for range 3 {
					if got := backendOf(t, listen, path, tc.header, value); got != first {
						t.Errorf("key %s%s: backend %s, then %s; want the same", path, value, first, got)
					}
				}
				seen[first]++
			}
			if seen["b1"] == 0 || seen["b2"] == 0 {
				t.Errorf("32 keys went to %v, want both backends", seen)
			}
			http.DefaultClient.CloseIdleConnections()
		})
	}
}

// TestBodyIdleTimeoutFlag: -body-idle-timeout reaches the proxy: a backend that sends 3 bytes of
// a 100-byte body and then nothing has its answer cut after 0.3s (the per-try timeout, 15s,
// bounds only the wait for the head), and the client sees the body end short.
func TestBodyIdleTimeoutFlag(t *testing.T) {
	backend := loopback.Serve(t, func(_ int, c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
		io.Copy(io.Discard, br) // silent until the proxy or the test's end closes c
	})
	listen := freeport.TCP(t)
	start(t, runHTTPContext, listen, "-backends", backend, "-body-idle-timeout", "300ms")
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	begin := time.Now()
	resp, err := client.Get("http://" + listen + "/stall")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if took := time.Since(begin); string(body) != "abc" || err != io.ErrUnexpectedEOF || took > 5*time.Second {
		t.Errorf("body %q, %v after %v; want abc, then unexpected EOF within 5s", body, err, took)
	}
}

func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(context.Context, []string, io.Writer) error
		args []string
		want string
	}{
		{"http no backends", runHTTPContext, nil, "-backends is required"},
		{"http bad balancer", runHTTPContext, []string{"-backends", "127.0.0.1:1", "-balancer", "random"}, "-balancer"},
		{"http https backend", runHTTPContext, []string{"-backends", "https://x:1"}, "only http://"},
		{"tcp bad endpoint", runTCPContext, []string{"-backends", "nohost"}, "not host:port"},
		{"http huge weight", runHTTPContext, []string{"-backends", "127.0.0.1:9*92233720368547758,127.0.0.1:10", "-balancer", "ring"}, "is above 65535"},
		{"tcp huge weight", runTCPContext, []string{"-backends", "127.0.0.1:9*9223372036854775807", "-balancer", "maglev"}, "is above 65535"},
		{"http duplicate backend", runHTTPContext, []string{"-backends", "127.0.0.1:9,http://127.0.0.1:9"}, "listed twice"},
		{"tcp bad max conns", runTCPContext, []string{"-backends", "a:1", "-max-conns", "0"}, "-max-conns 0: want 1 or more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run(t.Context(), tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// TestSubcommandHelpAndUnknownFlag: the http and tcp subcommands read their flags as the flag
// package's commands do: -h prints the usage and exits 0, an unknown flag exits 2. (The nutcracker
// command line keeps nutcracker's statuses; see TestNutcrackerFlagErrors.)
func TestSubcommandHelpAndUnknownFlag(t *testing.T) {
	bin := buildAmbassador(t)
	cmdlinetest.TestHelpAndBadFlag(t, "-per-try-timeout", exec.Command(bin, "http"))
	cmdlinetest.TestHelpAndBadFlag(t, "-max-conns", exec.Command(bin, "tcp"))
}

// TestSubcommandUsageErrors: a command line the http or tcp subcommand cannot use, or would read
// otherwise than it says (a stray argument, an empty -backends item, a negative timeout), exits 2
// naming the flag, before it listens.
func TestSubcommandUsageErrors(t *testing.T) {
	bin := buildAmbassador(t)
	cmdlinetest.TestExits(t, exec.Command(bin, "http", "-listen", "127.0.0.1:0"), []cmdlinetest.Exit{
		{Args: nil, Status: 2, Stderr: "ambassador: -backends is required"},
		// The flag package stops at the first argument that is no flag: the flags after it were dropped.
		{Args: []string{"-backends", "127.0.0.1:1", "extra", "-balancer", "ring"}, Status: 2, Stderr: `ambassador: unexpected arguments ["extra" "-balancer" "ring"]`},
		{Args: []string{"-backends", "127.0.0.1:1,"}, Status: 2, Stderr: `ambassador: -backends "127.0.0.1:1,": empty item in the comma-separated list`},
		{Args: []string{"-backends", ","}, Status: 2, Stderr: `ambassador: -backends ",": empty item in the comma-separated list`},
		{Args: []string{"-backends", "https://x:1"}, Status: 2, Stderr: "ambassador: -backends: https://x:1: only http:// endpoints are supported"},
		{Args: []string{"-backends", "127.0.0.1:1*x"}, Status: 2, Stderr: `ambassador: -backends "127.0.0.1:1*x": ambassador: `},
		{Args: []string{"-backends", "127.0.0.1:1", "-balancer", "random"}, Status: 2, Stderr: `ambassador: -balancer "random": want rr, p2c, ring or maglev`},
		{Args: []string{"-backends", "127.0.0.1:1", "-retries", "-1"}, Status: 2, Stderr: "ambassador: -retries -1: want 0 or more"},
		{Args: []string{"-backends", "127.0.0.1:1", "-connect-timeout", "-1s"}, Status: 2, Stderr: "ambassador: -connect-timeout -1s: want 0 (the system's) or more"},
		{Args: []string{"-backends", "127.0.0.1:1", "-idle-timeout", "-1s"}, Status: 2, Stderr: "ambassador: -idle-timeout -1s: want 0 (none) or more"},
		{Args: []string{"-backends", "127.0.0.1:1", "-per-try-timeout", "-1s"}, Status: 2, Stderr: "ambassador: -per-try-timeout -1s: want 0 (none) or more"},
		{Args: []string{"-backends", "127.0.0.1:1", "-body-idle-timeout", "-1s"}, Status: 2, Stderr: "ambassador: -body-idle-timeout -1s: want 0 (none) or more"},
		{Args: []string{"-backends", "127.0.0.1:1", "-health", "healthz"}, Status: 2, Stderr: `ambassador: -health "healthz": want a path starting with /`},
		{Args: []string{"-backends", "127.0.0.1:1", "-health-interval", "-1s"}, Status: 2, Stderr: "ambassador: -health-interval -1s: want 0 (no health checks) or 100ms or more"},
		// Shorter intervals check in a tight loop: 1ns opened thousands of connections a second.
		{Args: []string{"-backends", "127.0.0.1:1", "-health-interval", "1ns"}, Status: 2, Stderr: "ambassador: -health-interval 1ns: want 0 (no health checks) or 100ms or more"},
		{Args: []string{"-backends", "127.0.0.1:1", "-health", "/healthz", "-health-interval", "0"}, Status: 2, Stderr: `ambassador: -health "/healthz" with -health-interval 0: the checks are off`},
		{Args: []string{"-backends", "127.0.0.1:1", "-admin", "8081"}, Status: 2, Stderr: `ambassador: -admin "8081": want HOST:PORT`},
		{Args: []string{"-backends", "127.0.0.1:1", "-listen", "8080"}, Status: 2, Stderr: `ambassador: -listen "8080": want HOST:PORT`},
		// An address no listener can ever have is a mistake of the command line; a port in use is
		// not (TestListenFailures).
		{Args: []string{"-backends", "127.0.0.1:1", "-listen", ":99999"}, Status: 2, Stderr: `ambassador: -listen ":99999": port "99999": want a number from 0 to 65535`},
		{Args: []string{"-backends", "127.0.0.1:1", "-admin", "127.0.0.1:70000"}, Status: 2, Stderr: `ambassador: -admin "127.0.0.1:70000": port "70000": want a number`},
		// What the proxy would drop from a backend URL is refused, not dropped.
		{Args: []string{"-backends", "http://u:p@127.0.0.1:1/path?q"}, Status: 2, Stderr: "ambassador: -backends: http://u:p@127.0.0.1:1/path?q: a backend URL is http://HOST[:PORT]: the proxy does not use its user info, path and query"},
		{Args: []string{"-backends", "127.0.0.1:2,http://127.0.0.1:1/api"}, Status: 2, Stderr: "ambassador: -backends: http://127.0.0.1:1/api: a backend URL is http://HOST[:PORT]: the proxy does not use its path"},
		{Args: []string{"-backends", "http://127.0.0.1:1?"}, Status: 2, Stderr: "the proxy does not use its query"},
		{Args: []string{"-backends", "http://127.0.0.1:1#top"}, Status: 2, Stderr: "the proxy does not use its fragment"},
		{Args: []string{"-backends", "http://:1"}, Status: 2, Stderr: "ambassador: -backends: http://:1: no host"},
		{Args: []string{"-backends", "127.0.0.1:1/path"}, Status: 2, Stderr: `ambassador: -backends "127.0.0.1:1/path": port "1/path": want a number from 1 to 65535`},
		{Args: []string{"-backends", "127.0.0.1:0"}, Status: 2, Stderr: `ambassador: -backends "127.0.0.1:0": port "0": want a number from 1 to 65535`},
		// Weight 0 would count as 1: haproxy's users mean no traffic by it.
		{Args: []string{"-backends", "127.0.0.1:1*0,127.0.0.1:2"}, Status: 2, Stderr: "ambassador: -backends: 127.0.0.1:1*0: weight 0 would count as 1, not as no traffic"},
		{Args: []string{"-backends", "http://127.0.0.1:1*0"}, Status: 2, Stderr: "ambassador: -backends: http://127.0.0.1:1*0: weight 0 would count as 1"},
		// -key says what ring and maglev hash; no other balancer hashes.
		{Args: []string{"-backends", "127.0.0.1:1", "-key", "path"}, Status: 2, Stderr: "ambassador: -key: only with -balancer ring or maglev"},
		{Args: []string{"-backends", "127.0.0.1:1", "-balancer", "p2c", "-key", "client-ip"}, Status: 2, Stderr: "ambassador: -key: only with -balancer ring or maglev"},
		{Args: []string{"-backends", "127.0.0.1:1", "-balancer", "ring", "-key", "url"}, Status: 2, Stderr: `ambassador: -key "url": want path, client-ip, header:NAME or cookie:NAME`},
		{Args: []string{"-backends", "127.0.0.1:1", "-balancer", "maglev", "-key", "header:"}, Status: 2, Stderr: `ambassador: -key "header:": want path, client-ip`},
		{Args: []string{"-backends", "127.0.0.1:1", "-balancer", "ring", "-key", "cookie:a b"}, Status: 2, Stderr: `ambassador: -key "cookie:a b": want path, client-ip`},
		{Args: []string{"-backends", "127.0.0.1:1", "-balancer", "ring", "-key", ""}, Status: 2, Stderr: `ambassador: -key "": want path, client-ip`},
	})
	cmdlinetest.TestExits(t, exec.Command(bin, "tcp", "-listen", "127.0.0.1:0"), []cmdlinetest.Exit{
		{Args: []string{"-backends", "nohost"}, Status: 2, Stderr: `ambassador: -backends "nohost": ambassador: config endpoints: address "nohost" is not host:port`},
		{Args: []string{"-backends", "127.0.0.1:1", "-max-conns", "0"}, Status: 2, Stderr: "ambassador: -max-conns 0: want 1 or more"},
		{Args: []string{"-backends", "127.0.0.1:1", "-health-interval", "-2s"}, Status: 2, Stderr: "ambassador: -health-interval -2s: want 0 (no health checks) or 100ms or more"},
		{Args: []string{"-backends", "127.0.0.1:1", "-health-interval", "99ms"}, Status: 2, Stderr: "ambassador: -health-interval 99ms: want 0 (no health checks) or 100ms or more"},
		{Args: []string{"-backends", "127.0.0.1:1,,127.0.0.1:2"}, Status: 2, Stderr: `ambassador: -backends "127.0.0.1:1,,127.0.0.1:2": empty item`},
		{Args: []string{"-backends", "http://127.0.0.1:1"}, Status: 2, Stderr: "ambassador: -backends: http://127.0.0.1:1: a tcp backend is HOST:PORT, not a URL"},
		{Args: []string{"-backends", "127.0.0.1:1*0"}, Status: 2, Stderr: "ambassador: -backends: 127.0.0.1:1*0: weight 0 would count as 1"},
		{Args: []string{"-backends", "127.0.0.1:1", "-listen", ":99999"}, Status: 2, Stderr: `ambassador: -listen ":99999": port "99999": want a number from 0 to 65535`},
	})
}

// TestListenFailures: a -listen port in use is a failure of the moment (exit 1), not of the command
// line; and a ring keyed by the client's IP address behind a loopback -listen, where every client
// is this host, is said to send all the traffic to one backend (the warning comes before the
// listen fails). The default key, the path, draws no warning.
func TestListenFailures(t *testing.T) {
	bin := buildAmbassador(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	inUse := ln.Addr().String()
	cmdlinetest.TestExits(t, exec.Command(bin), []cmdlinetest.Exit{
		{Args: []string{"http", "-listen", inUse, "-backends", "127.0.0.1:1"}, Status: 1, Stderr: "address already in use"},
		{Args: []string{"tcp", "-listen", inUse, "-backends", "127.0.0.1:1"}, Status: 1, Stderr: "address already in use"},
		{Args: []string{"http", "-listen", inUse, "-backends", "127.0.0.1:1", "-balancer", "ring", "-key", "client-ip"}, Status: 1,
			Stderr: "ambassador: warning: -key client-ip with the loopback -listen " + inUse + ": every client is this host, so one backend gets all the traffic"},
		{Args: []string{"tcp", "-listen", inUse, "-backends", "127.0.0.1:1", "-balancer", "maglev"}, Status: 1,
			Stderr: "ambassador: warning: -balancer maglev (it hashes the client's IP address) with the loopback -listen " + inUse},
	})
	for _, args := range [][]string{{"http", "-balancer", "ring"}, {"http", "-balancer", "ring", "-key", "header:X-User"}, {"tcp", "-balancer", "rr"}} {
		cmd := exec.Command(bin, append(args, "-listen", inUse, "-backends", "127.0.0.1:1")...)
		if status, _, stderr := cmdlinetest.Outputs(t, cmd); status != 1 || strings.Contains(stderr, "warning") {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 and no warning", cmd, status, stderr)
		}
	}
}

func TestTCPSubcommand(t *testing.T) {
	b := ambassadortest.NewTCPBackend(t, "echo")
	listen := freeport.TCP(t)
	start(t, runTCPContext, listen, "-backends", b.Addr)
	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Errorf("echo %q, %v; want ping", buf, err)
	}
}

func TestHTTPSubcommandAdmin(t *testing.T) {
	b := ambassadortest.NewHTTPBackend(t, "b")
	listen, admin := freeport.TCP(t), freeport.TCP(t)
	start(t, runHTTPContext, listen, "-backends", b.Addr, "-admin", admin)
	resp, err := http.Get("http://" + listen + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	metrics, ok := waitMetrics(t, admin, 15*time.Second, "podblocks_ambassador_requests_total")
	if !ok {
		t.Errorf("/metrics on -admin lacks podblocks_ambassador_requests_total:\n%.2000s", metrics)
	}
	resp, err = http.Get("http://" + admin + "/statusz?format=json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "ambassador cluster default") || !strings.Contains(string(body), b.Addr) {
		t.Errorf("/statusz lacks the cluster table:\n%.2000s", body)
	}
	http.DefaultClient.CloseIdleConnections()
}

// TestDefaultHealthChecks: without -health, and for tcp, a backend no connection reaches is marked
// unavailable by the TCP connect checks, with no traffic needed to find it out; -health-interval
// sets how often they run.
func TestDefaultHealthChecks(t *testing.T) {
	for _, tc := range []struct {
		name     string
		run      func(context.Context, []string, io.Writer) error
		live     string
		interval []string
		within   time.Duration
	}{
		{"http", runHTTPContext, ambassadortest.NewHTTPBackend(t, "b").Addr, nil, 20 * time.Second},
		{"tcp", runTCPContext, ambassadortest.NewTCPBackend(t, "b").Addr, nil, 20 * time.Second},
		// Three failed checks 100ms apart take 200ms; at the default 2s they take 4s, and by 1.5s
		// only the first has run: the bound tells the two apart.
		{"http interval 100ms", runHTTPContext, ambassadortest.NewHTTPBackend(t, "b").Addr, []string{"-health-interval", "100ms"}, 1500 * time.Millisecond},
		{"tcp interval 100ms", runTCPContext, ambassadortest.NewTCPBackend(t, "b").Addr, []string{"-health-interval", "100ms"}, 1500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dead := freeport.TCP(t) // nothing listens there
			listen, admin := freeport.TCP(t), freeport.TCP(t)
			start(t, tc.run, listen, append([]string{"-backends", tc.live + "," + dead, "-admin", admin}, tc.interval...)...)
			want := `podblocks_ambassador_endpoint_available{cluster="default",endpoint="` + dead + `"} 0`
			if metrics, ok := waitMetrics(t, admin, tc.within, want); !ok {
				t.Errorf("/metrics lacks %s %v after start:\n%.3000s", want, tc.within, metrics)
			}
			http.DefaultClient.CloseIdleConnections()
		})
	}
}

// TestHealthIntervalZero: -health-interval 0 turns the health checks off, as they were before
// they ran by default. A backend's first check runs as soon as the proxy is ready, whatever the
// interval, so with the checks on (the default 2s here) a connection reaches the watched backend
// within firstCheck of the listening line, and with 0 none does: the proxy sends it nothing while
// no request needs it. (The ambassador package reads an Interval of 0 as its default 5s, so the
// command must leave the checks out, not pass 0 on.)
func TestHealthIntervalZero(t *testing.T) {
	const firstCheck = time.Second // a loopback connect the check goroutine, started before ready, opens at once
	for _, tc := range []struct {
		name     string
		run      func(context.Context, []string, io.Writer) error
		live     string
		interval []string
		checked  bool // whether a check connection reaches the watched backend
	}{
		{"http default", runHTTPContext, ambassadortest.NewHTTPBackend(t, "b").Addr, nil, true},
		{"tcp default", runTCPContext, ambassadortest.NewTCPBackend(t, "b").Addr, nil, true},
		{"http 0", runHTTPContext, ambassadortest.NewHTTPBackend(t, "b").Addr, []string{"-health-interval", "0"}, false},
		{"tcp 0", runTCPContext, ambassadortest.NewTCPBackend(t, "b").Addr, []string{"-health-interval", "0"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			watched := ambassadortest.NewTCPBackend(t, "watched") // counts the connections it accepts
			// Nothing connects to the proxy (start's probe would be proxied to a backend); without
			// -admin the command prints the listening line once the proxy is ready, after its
			// cluster started the checks.
			out, _ := launch(t, tc.run, append([]string{"-listen", "127.0.0.1:0", "-backends", tc.live + "," + watched.Addr}, tc.interval...)...)
			if !ambassadortest.WaitFor(t.Context(), 15*time.Second, func() bool { return strings.Contains(out.String(), "listening on ") }) {
				t.Fatalf("stdout %q, want the listening line", out.String())
			}
			got := ambassadortest.WaitFor(t.Context(), firstCheck, func() bool { return watched.Conns() > 0 })
			if got != tc.checked {
				t.Errorf("a connection reached the watched backend within %v of ready: %v, want %v (%d connections)", firstCheck, got, tc.checked, watched.Conns())
			}
		})
	}
}

// waitMetrics polls admin's /metrics until it contains want, for at most within (one read when
// within is 0), and returns the last body read and whether it contained want.
func waitMetrics(t *testing.T, admin string, within time.Duration, want string) (string, bool) {
	t.Helper()
	var metrics string
	read := func() bool {
		resp, err := http.Get("http://" + admin + "/metrics")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metrics = string(body)
		return strings.Contains(metrics, want)
	}
	ok := ambassadortest.WaitFor(t.Context(), within, read)
	return metrics, ok
}
