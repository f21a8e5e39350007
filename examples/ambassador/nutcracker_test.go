package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/shardproc"
	"github.com/podblocks/podblocks/internal/syncbuf"
)

// buildAmbassador builds this binary once per test.
func buildAmbassador(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ambassador")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestNutcrackerTestConf(t *testing.T) {
	bin := buildAmbassador(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yml")
	bad := filepath.Join(dir, "bad.yml")
	// As nutcracker -t: a listen host that does not resolve is invalid, a server host is not
	// (nutcracker resolves it when it connects).
	badListen := filepath.Join(dir, "badlisten.yml")
	lazyServer := filepath.Join(dir, "lazyserver.yml")
	os.WriteFile(good, []byte("a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\n"), 0o600)
	os.WriteFile(bad, []byte("a:\n  listen: 127.0.0.1:22121\n  sever_connections: 2\n  servers:\n   - 127.0.0.1:11211:1\n"), 0o600)
	os.WriteFile(badListen, []byte("a:\n  listen: nohost.invalid:22121\n  servers:\n   - 127.0.0.1:11211:1\n"), 0o600)
	os.WriteFile(lazyServer, []byte("a:\n  listen: localhost:22121\n  servers:\n   - nohost.invalid:11211:1\n"), 0o600)
	for _, tc := range []struct {
		file string
		code int
		want []string
	}{
		{good, 0, []string{"syntax is ok"}},
		{bad, 1, []string{"syntax is invalid", "line 3", `"sever_connections"`, "unknown"}},
		{badListen, 1, []string{"syntax is invalid", "line 1", `pool "a"`, `"listen"`, "nohost.invalid"}},
		{lazyServer, 0, []string{"syntax is ok"}},
	} {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, "-t", "-c", tc.file)
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code {
			t.Errorf("-t %s: exit %d, want %d (%s)", tc.file, code, tc.code, stderr.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("-t %s: stderr %q lacks %q", tc.file, stderr.String(), w)
			}
		}
	}
}

// A bad command line gets nutcracker 0.5.0's message for it, then the usage, and exit status 1, as
// nutcracker does; the old code printed the usage alone, or took a bad -s or -m value and failed
// later on something else, said "requires a number" for a -m that is not one (nutcracker: "requires
// a non-zero number"), and printed the help and exited 0 on -? (nutcracker: invalid option).
func TestNutcrackerFlagErrors(t *testing.T) {
	bin := buildAmbassador(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-x"}, "ambassador: invalid option -- 'x'"},
		{[]string{"--bogus"}, "ambassador: invalid option -- 'bogus'"},
		{[]string{"-s", "abc"}, "ambassador: option -s requires a number"},
		{[]string{"--stats-port=-1"}, "ambassador: option -s requires a number"},
		{[]string{"-s", "70000"}, "ambassador: option -s value 70000 is not a valid port"},
		{[]string{"-s", "0"}, "ambassador: option -s value 0 is not a valid port"},
		{[]string{"-s"}, "ambassador: option -s requires a number"},
		{[]string{"-c"}, "ambassador: option -c requires a file name"},
		{[]string{"-t", "-conf-file"}, "ambassador: option -conf-file requires a file name"},
		{[]string{"-a"}, "ambassador: option -a requires a string"},
		{[]string{"-metrics"}, "ambassador: option -metrics requires an address"},
		{[]string{"-v", "x"}, "ambassador: option -v requires a number"},
		{[]string{"-i", "-5"}, "ambassador: option -i requires a number"},
		{[]string{"-m", "0"}, "ambassador: option -m requires a non-zero number"},
		{[]string{"-m", "abc"}, "ambassador: option -m requires a non-zero number"},
		{[]string{"-m", "-5"}, "ambassador: option -m requires a non-zero number"},
		{[]string{"--mbuf-size=12x"}, "ambassador: option -m requires a non-zero number"},
		{[]string{"-m"}, "ambassador: option -m requires a number"},
		{[]string{"-v", "-1"}, "ambassador: option -v requires a number"},
		{[]string{"-i", "5x"}, "ambassador: option -i requires a number"},
		{[]string{"-s", "+80"}, "ambassador: option -s requires a number"},
		{[]string{"-?"}, "ambassador: invalid option -- '?'"},
		{[]string{"-m", "1"}, "ambassador: mbuf chunk size must be between 512 and 16777216 bytes"},
		{[]string{"-t=maybe"}, "ambassador: invalid boolean value"},
	} {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, tc.args...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 {
			t.Errorf("%q: %v, want exit status 1", tc.args, err)
		}
		first, rest, _ := strings.Cut(stderr.String(), "\n")
		if !strings.HasPrefix(first, tc.want) || !strings.HasPrefix(rest, "Usage: ambassador ") {
			t.Errorf("%q: stderr %q, want a line starting %q, then the usage", tc.args, stderr.String(), tc.want)
		}
	}
	// -h and --help print the help on stdout and exit 0, as nutcracker's.
	for _, arg := range []string{"-h", "--help", "-help"} {
		out, err := exec.Command(bin, arg).Output()
		if err != nil || !strings.HasPrefix(string(out), "Usage: ambassador ") {
			t.Errorf("%s: %v, stdout %q; want the usage and exit 0", arg, err, out)
		}
	}
	// A good value of each is taken: -t on a good config exits 0.
	good := filepath.Join(t.TempDir(), "good.yml")
	os.WriteFile(good, []byte("a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\n"), 0o600)
	cmd := exec.Command(bin, "-t", "-c", good, "-s", "65535", "-v", "11", "-i", "0", "-m", "512", "-a", "127.0.0.1", "-metrics", "127.0.0.1:0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("good options: %v\n%s", err, out)
	}
}

func ncWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startAmbassador runs bin with args, its stderr to stderr, until the test ends: then it sends
// SIGTERM and fails the test unless the binary exits 0 within 20s. When the test failed, it logs
// what log returns.
func startAmbassador(t *testing.T, bin string, stderr io.Writer, log func() string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("exit after SIGTERM: %v", err)
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Error("no exit within 20s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("ambassador log:\n%s", log())
		}
	})
	return cmd
}

// TestNutcrackerServeReload runs the binary on a memcache pool, then grows the pool by SIGHUP and
// by rewriting the file, and checks that one client connection keeps working throughout, that keys
// follow the new config, that an invalid config is rejected while the old one keeps serving, that
// the stats port answers nutcracker's JSON, and that SIGTERM exits 0.
func TestNutcrackerServeReload(t *testing.T) {
	if !shardproc.Have(shardproc.MemcachedPath) {
		t.Skipf("%s is not installed (Debian package memcached); skipping", shardproc.MemcachedPath)
	}
	bin := buildAmbassador(t)
	var mcs []*shardproc.Proc
	for range 3 {
		p, err := shardproc.StartMemcached()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		mcs = append(mcs, p)
	}
	ports, err := shardproc.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	port, statsPort, metricsPort := ports[0], ports[1], ports[2]
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	conf := filepath.Join(t.TempDir(), "nutcracker.yml")
	write := func(servers ...*shardproc.Proc) {
		s := fmt.Sprintf("mc:\n  listen: %s\n  hash: md5\n  servers:\n", listen)
		for _, m := range servers {
			s += fmt.Sprintf("   - %s:1\n", m.Addr)
		}
		tmp := conf + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, conf); err != nil {
			t.Fatal(err)
		}
	}
	write(mcs[0])
	logs := &syncbuf.Buffer{}
	cmd := startAmbassador(t, bin, logs, logs.String, "-c", conf, "-s", fmt.Sprint(statsPort), "-o", "stderr",
		"-metrics", fmt.Sprintf("127.0.0.1:%d", metricsPort))
	var c net.Conn
	ncWait(t, "the pool to listen", func() bool {
		var err error
		c, err = net.Dial("tcp", listen)
		return err == nil
	})
	defer c.Close()
	r := bufio.NewReader(c)
	set := func(k string) string {
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "set %s 0 0 1\r\nx\r\n", k)
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
		return l
	}
	onServer := func(addr, k string) bool {
		d, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		_ = d.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(d, "get %s\r\n", k)
		l, _ := bufio.NewReader(d).ReadString('\n')
		return strings.HasPrefix(l, "VALUE ")
	}
	if got := set("k0"); got != "STORED\r\n" || !onServer(mcs[0].Addr, "k0") {
		t.Fatalf("first set: %q", got)
	}
	// Reload by SIGHUP with a second server: some keys must land on it, same connection.
	write(mcs[0], mcs[1])
	_ = cmd.Process.Signal(syscall.SIGHUP)
	cfg2, err := twemproxy.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	pl := twemproxy.NewPlacer(cfg2.Pools[0], nil)
	var key1 string
	for i := range 100 {
		if k := fmt.Sprintf("k%d", i); cfg2.Pools[0].Servers[pl.Place([]byte(k))].Addr == mcs[1].Addr {
			key1 = k
			break
		}
	}
	ncWait(t, "SIGHUP reload to place a key on the second server", func() bool {
		return set(key1) == "STORED\r\n" && onServer(mcs[1].Addr, key1)
	})
	// Reload by file change with a third server.
	write(mcs[0], mcs[1], mcs[2])
	cfg3, _ := twemproxy.ReadFile(conf)
	pl3 := twemproxy.NewPlacer(cfg3.Pools[0], nil)
	var key2 string
	for i := range 200 {
		if k := fmt.Sprintf("f%d", i); cfg3.Pools[0].Servers[pl3.Place([]byte(k))].Addr == mcs[2].Addr {
			key2 = k
			break
		}
	}
	ncWait(t, "file-change reload to place a key on the third server", func() bool {
		return set(key2) == "STORED\r\n" && onServer(mcs[2].Addr, key2)
	})
	// An invalid config is rejected; the running one keeps serving.
	if err := os.WriteFile(conf, []byte("mc:\n  listen: "+listen+"\n  bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	ncWait(t, "the rejected reload to be logged", func() bool {
		return strings.Contains(logs.String(), "config reload rejected")
	})
	if got := set(key2); got != "STORED\r\n" || !onServer(mcs[2].Addr, key2) {
		t.Errorf("after a rejected reload: %q", got)
	}
	// Stats port: nutcracker's JSON.
	sc, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", statsPort))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(sc)
	sc.Close()
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("stats: %v: %s", err, raw)
	}
	if pool, ok := doc["mc"].(map[string]any); !ok || pool["client_connections"].(float64) < 1 {
		t.Errorf("stats: %s", raw)
	}
	// Prometheus metrics on -metrics.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf(`podblocks_sharding_server_requests_total{pool="mc",server="%s"}`, mcs[0].Addr); !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %s:\n%s", want, body)
	}
}
