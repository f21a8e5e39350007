package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/ambassadortest"
	"github.com/podblocks/podblocks/internal/cmdline/cmdlinetest"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/internal/syncbuf"
)

// TestMain is the package's only TestMain (the nutcracker tests share it).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start runs a subcommand until the test ends and waits until it serves on listen.
func start(t *testing.T, run func(context.Context, []string, io.Writer) error, listen string, args ...string) *syncbuf.Buffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, append([]string{"-listen", listen}, args...), out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run = %v, want nil", err)
		}
	})
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

func TestHTTPSubcommand(t *testing.T) {
	b1, b2 := ambassadortest.NewHTTPBackend(t, "b1"), ambassadortest.NewHTTPBackend(t, "b2")
	listen := freeport.TCP(t)
	out := start(t, runHTTPContext, listen, "-backends", "http://"+b1.Addr+","+b2.Addr, "-balancer", "p2c")
	seen := map[string]int{}
	for range 20 {
		resp, err := http.Get("http://" + listen + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen[strings.TrimSpace(string(body))]++
	}
	if seen["b1"] == 0 || seen["b2"] == 0 {
		t.Errorf("responses %v, want both backends", seen)
	}
	if !ambassadortest.WaitFor(t.Context(), 5*time.Second, func() bool { return strings.Contains(out.String(), "listening on "+listen) }) {
		t.Errorf("stdout %q, want the listening line", out.String())
	}
	http.DefaultClient.CloseIdleConnections()
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
		{Args: []string{"-backends", "127.0.0.1:1", "-health", "healthz"}, Status: 2, Stderr: `ambassador: -health "healthz": want a path starting with /`},
		{Args: []string{"-backends", "127.0.0.1:1", "-admin", "8081"}, Status: 2, Stderr: `ambassador: -admin "8081": want HOST:PORT`},
		{Args: []string{"-backends", "127.0.0.1:1", "-listen", "8080"}, Status: 2, Stderr: `ambassador: -listen "8080": want HOST:PORT`},
	})
	cmdlinetest.TestExits(t, exec.Command(bin, "tcp", "-listen", "127.0.0.1:0"), []cmdlinetest.Exit{
		{Args: []string{"-backends", "nohost"}, Status: 2, Stderr: `ambassador: -backends "nohost": ambassador: config endpoints: address "nohost" is not host:port`},
		{Args: []string{"-backends", "127.0.0.1:1", "-max-conns", "0"}, Status: 2, Stderr: "ambassador: -max-conns 0: want 1 or more"},
		{Args: []string{"-backends", "127.0.0.1:1,,127.0.0.1:2"}, Status: 2, Stderr: `ambassador: -backends "127.0.0.1:1,,127.0.0.1:2": empty item`},
	})
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
	var metrics string
	ok := ambassadortest.WaitFor(t.Context(), 15*time.Second, func() bool {
		resp, err := http.Get("http://" + admin + "/metrics")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metrics = string(body)
		return strings.Contains(metrics, "podblocks_ambassador_requests_total")
	})
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
