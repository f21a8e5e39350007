package scrape_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/adapter/scrape"
	"github.com/podblocks/podblocks/adaptertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const doc = `{
  "stats": {"requests": 1234, "up": true, "ratio": "0.5", "name": "svc"},
  "queues": [
    {"name": "email", "depth": 3, "age": 1.5},
    {"name": "sms", "depth": 0, "age": 0}
  ],
  "weird key": {"x": 7}
}`

const jsonConfig = `
metrics:
- name: app_requests_total
  type: counter
  help: Requests served.
  path: '{.stats.requests}'
- name: app_up
  path: $.stats.up
  labels:
    service: '{.stats.name}'
- name: app_ratio
  path: '{ .stats.ratio }'
  labels:
    env: prod
    svc: 'svc-{.stats.name}-{ .stats.up }'

- name: app_queue
  type: object
  path: '{.queues[*]}'
  labels:
    queue: '{.name}'
  values:
    depth: '{.depth}'
    oldest_seconds: '{.age}'
- name: app_weird
  path: "$['weird key'].x"
- name: app_missing
  path: $.nope
`

func TestPaths(t *testing.T) {
	d, err := scrape.DecodeJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path string
		want []string
	}{
		{"$.stats.requests", []string{"1234"}},
		{"{.stats.name}", []string{"svc"}},
		{"$.queues[*].name", []string{"email", "sms"}},
		{"$.queues[-1].name", []string{"sms"}},
		{"$.queues[5].name", nil},
		{"$.stats.*", []string{"svc", "0.5", "1234", "true"}},
		{"$['weird key'].x", []string{"7"}},
		{"$.stats.requests.deeper", nil},
	}
	for _, tc := range cases {
		p, err := scrape.CompilePath(tc.path)
		if err != nil {
			t.Fatalf("CompilePath(%q): %v", tc.path, err)
		}
		var got []string
		for _, v := range p.Eval(d) {
			got = append(got, fmt.Sprint(v))
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Eval(%q) (-want +got):\n%s", tc.path, diff)
		}
	}
	for _, bad := range []string{"{.a", "$.a[", "$..a", "$.a[x]", "$a", "{ .a b }"} {
		if _, err := scrape.CompilePath(bad); !errors.Is(err, scrape.ErrBadPath) {
			t.Errorf("CompilePath(%q) error = %v, want ErrBadPath", bad, err)
		}
	}
}

func jsonServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/doc":
			io.WriteString(w, doc)
		case "/bad":
			io.WriteString(w, "{not json")
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestJSONProbeHandlers(t *testing.T) {
	cfg, err := scrape.ParseJSONConfig([]byte(jsonConfig))
	if err != nil {
		t.Fatal(err)
	}
	src := jsonServer(t)
	reg := prometheus.NewRegistry()
	e, err := scrape.New(&scrape.JSONProbe{Config: cfg}, scrape.WithTarget(src.URL+"/doc"), scrape.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", e.Handler())
	mux.Handle("/probe", e.ProbeHandler())
	srv := httptest.NewServer(mux)
	defer srv.Close()

	got, err := adaptertest.Scrape(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"app_requests_total":                       1234,
		`app_up{service="svc"}`:                    1,
		`app_ratio{env="prod",svc="svc-svc-true"}`: 0.5,
		`app_queue_depth{queue="email"}`:           3,
		`app_queue_depth{queue="sms"}`:             0,
		`app_queue_oldest_seconds{queue="email"}`:  1.5,
		`app_queue_oldest_seconds{queue="sms"}`:    0,
		"app_weird":                                7,
		"probe_success":                            1,
	}
	delete(got, "podblocks_adapter_scrape_duration_seconds")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("/metrics (-want +got):\n%s", diff)
	}

	got, err = adaptertest.Scrape(srv.URL + "/probe?target=" + src.URL + "/bad")
	if err != nil {
		t.Fatal(err)
	}
	if got["probe_success"] != 0 {
		t.Errorf("probe of a bad document: probe_success = %v, want 0", got["probe_success"])
	}
	resp, err := http.Get(srv.URL + "/probe")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("/probe without target: %d, want 400", resp.StatusCode)
	}
	if v, _ := adaptertest.Values(reg); v[`podblocks_adapter_scrape_probes_total{result="failure"}`] != 1 {
		t.Errorf("probes_total = %v", v)
	}
}

func TestAllowTargets(t *testing.T) {
	cfg, _ := scrape.ParseJSONConfig([]byte(jsonConfig))
	e, err := scrape.New(&scrape.JSONProbe{Config: cfg}, scrape.WithAllowTargets(func(s string) bool {
		return strings.HasPrefix(s, "http://allowed/")
	}))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	e.ProbeHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/probe?target=http://169.254.169.254/", nil))
	if rec.Code != http.StatusForbidden {
		t.Errorf("disallowed target: %d, want 403", rec.Code)
	}
	rec = httptest.NewRecorder()
	e.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("Handler without a default target: %d, want 404", rec.Code)
	}
}

func TestJSONConfigErrors(t *testing.T) {
	cases := map[string]string{
		"metrics":              "metrics: []\n",
		"metrics[0].name":      "metrics:\n- name: 'bad-name'\n  path: $.a\n",
		"metrics[0].path":      "metrics:\n- name: a\n  path: '$.a['\n",
		"metrics[0].type":      "metrics:\n- name: a\n  path: $.a\n  type: histogram\n",
		"metrics[0].values":    "metrics:\n- name: a\n  path: $.a\n  type: object\n",
		"metrics[0].labels.__": "metrics:\n- name: a\n  path: $.a\n  labels: {__: x}\n",
		"yaml":                 "metrics:\n- name: a\n  path: $.a\n  bogus: 1\n",
	}
	for field, y := range cases {
		_, err := scrape.ParseJSONConfig([]byte(y))
		var ce *scrape.ConfigError
		if !errors.As(err, &ce) || ce.Field != field {
			t.Errorf("config %q: error %v, want a ConfigError on %s", y, err, field)
		}
	}
	// Names whose samples would be dropped from every scrape, or would replace the adapter's own.
	for _, tc := range []struct{ field, yaml string }{
		{"metrics[0].name", "metrics:\n- name: probe_success\n  path: $.a\n"},
		{"metrics[0].name", "metrics:\n- name: podblocks_adapter_scrape_duration_seconds\n  path: $.a\n"},
		{"metrics[1].name", "metrics:\n- name: a\n  path: $.a\n  help: A.\n- name: a\n  path: $.b\n  help: B.\n"},
		{"metrics[1].name", "metrics:\n- name: a\n  path: $.a\n- name: a\n  path: $.b\n  type: counter\n"},
		{"metrics[1].values.depth", "metrics:\n- name: q_depth\n  path: $.a\n- name: q\n  type: object\n  path: '{.qs[*]}'\n  value_type: counter\n  values: {depth: '{.d}'}\n"},
	} {
		_, err := scrape.ParseJSONConfig([]byte(tc.yaml))
		var ce *scrape.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("config %q: error %v, want a ConfigError on %s", tc.yaml, err, tc.field)
		}
	}
	// One name from several entries that agree on help and type is fine (say, one per label value).
	if _, err := scrape.ParseJSONConfig([]byte("metrics:\n- name: a\n  path: $.a\n  labels: {k: x}\n- name: a\n  path: $.b\n  labels: {k: y}\n")); err != nil {
		t.Errorf("one name, two label values: %v", err)
	}
}

func TestClean(t *testing.T) {
	in := []scrape.Sample{
		{Name: "ok", Type: prometheus.GaugeValue, Value: 1},
		{Name: "ok", Type: prometheus.CounterValue, Value: 2},                                    // type changed
		{Name: "ok", Type: prometheus.GaugeValue, Value: 3},                                      // duplicate series
		{Name: "bad-name", Type: prometheus.GaugeValue},                                          // invalid name
		{Name: "l", Type: prometheus.GaugeValue, Labels: []scrape.Label{{"a", "1"}}, Value: 4},   //
		{Name: "l", Type: prometheus.GaugeValue, Labels: []scrape.Label{{"b", "1"}}, Value: 5},   // other label names
		{Name: "m", Type: prometheus.GaugeValue, Labels: []scrape.Label{{"a", "1"}, {"a", "2"}}}, // repeated label
		{Name: "n", Type: prometheus.GaugeValue, Labels: []scrape.Label{{"__reserved", "1"}}},    // reserved label
	}
	got := scrape.Clean(in)
	want := []scrape.Sample{in[0], in[4]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Clean (-want +got):\n%s", diff)
	}
}

func TestJSONProbeConformance(t *testing.T) {
	cfg, _ := scrape.ParseJSONConfig([]byte(jsonConfig))
	src := jsonServer(t)
	adaptertest.TestProbe(t, &scrape.JSONProbe{Config: cfg}, src.URL+"/doc", src.URL+"/missing")
}

// startRedis runs a real redis-server on a free loopback port.
func startRedis(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed (apt-get install redis-server): skipping the redis INFO probe tests")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", t.TempDir()}, args...)...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Kill)
		cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	adaptertest.Eventually(t, 30*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}, "redis-server accepting on "+addr)
	return addr
}

func redisDo(t *testing.T, addr string, cmd string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, cmd+"\r\n")
	buf := make([]byte, 256)
	n, _ := c.Read(buf)
	return string(buf[:n])
}

func TestRedisInfo(t *testing.T) {
	addr := startRedis(t)
	redisDo(t, addr, "SET a 1")
	redisDo(t, addr, "SET b 2")
	e, err := scrape.New(&scrape.RedisInfo{}, scrape.WithTarget(addr))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e.Handler())
	defer srv.Close()
	got, err := adaptertest.Scrape(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if got[`redis_db_keys{db="db0"}`] != 2 {
		t.Errorf(`redis_db_keys{db="db0"} = %v, want 2`, got[`redis_db_keys{db="db0"}`])
	}
	if got["redis_connected_clients"] < 1 || got["redis_commands_processed_total"] < 2 || got["probe_success"] != 1 {
		t.Errorf("connected_clients %v, commands_processed_total %v, probe_success %v",
			got["redis_connected_clients"], got["redis_commands_processed_total"], got["probe_success"])
	}
	found := false
	for k := range got {
		if strings.HasPrefix(k, "redis_instance_info{") && strings.Contains(k, `role="master"`) {
			found = true
		}
	}
	if !found {
		t.Error("no redis_instance_info with role=master")
	}
}

func TestRedisInfoAuth(t *testing.T) {
	addr := startRedis(t, "--requirepass", "s3cret")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := (&scrape.RedisInfo{}).Probe(ctx, addr); !errors.Is(err, scrape.ErrRedis) {
		t.Errorf("INFO without AUTH: error %v, want ErrRedis", err)
	}
	s, err := (&scrape.RedisInfo{Password: "s3cret"}).Probe(ctx, addr)
	if err != nil || len(s) == 0 {
		t.Errorf("INFO with AUTH: %d samples, error %v", len(s), err)
	}
}

func TestRedisInfoConformance(t *testing.T) {
	addr := startRedis(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	adaptertest.TestProbe(t, &scrape.RedisInfo{}, addr, closed)
}

func TestParseRedisInfo(t *testing.T) {
	info := "# Server\r\nredis_version:7.0.15\r\nrole:master\r\nuptime_in_seconds:10\r\n" +
		"used_memory_human:1.00M\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=5\r\nbad-key:1\r\n"
	got := scrape.ParseRedisInfo(info)
	want := []scrape.Sample{
		{Name: "redis_uptime_in_seconds", Help: "redis INFO field uptime_in_seconds.", Type: prometheus.GaugeValue, Value: 10},
		{Name: "redis_db_keys", Help: "Keyspace keys by database.", Type: prometheus.GaugeValue, Labels: []scrape.Label{{"db", "db0"}}, Value: 3},
		{Name: "redis_db_expires", Help: "Keyspace expires by database.", Type: prometheus.GaugeValue, Labels: []scrape.Label{{"db", "db0"}}, Value: 1},
		{Name: "redis_db_avg_ttl", Help: "Keyspace avg_ttl by database.", Type: prometheus.GaugeValue, Labels: []scrape.Label{{"db", "db0"}}, Value: 5},
		{Name: "redis_instance_info", Help: "redis INFO identity fields.", Type: prometheus.GaugeValue, Value: 1,
			Labels: []scrape.Label{{"redis_version", "7.0.15"}, {"redis_mode", ""}, {"role", "master"}, {"os", ""}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func FuzzParseRedisInfo(f *testing.F) {
	f.Add("# Server\r\nredis_version:7.0.15\r\ndb0:keys=3,expires=1\r\n")
	f.Add("db:keys=x\ndb1:=,=\n:\n")
	f.Add("# Server\r\nredis_version:7.0\xff\r\nconnected_clients:2\r\n")
	f.Fuzz(func(t *testing.T, info string) {
		for _, s := range scrape.ParseRedisInfo(info) {
			if c := scrape.Clean([]scrape.Sample{s}); len(c) != 1 {
				t.Errorf("ParseRedisInfo gave an unexposable sample %+v", s)
			}
		}
		// Every sample Clean keeps is in the exposition, which parses.
		e, err := scrape.New(infoProbe(info), scrape.WithTarget("x"))
		if err != nil {
			t.Fatal(err)
		}
		got := scrapeHandler(t, e.Handler())
		if want := len(scrape.Clean(scrape.ParseRedisInfo(info))) + 2; len(got) != want || got["probe_success"] != 1 {
			t.Errorf("exposition has %d series, want %d (the cleaned samples, probe_success 1 and the duration): %v", len(got), want, got)
		}
	})
}

func FuzzPath(f *testing.F) {
	for _, s := range []string{"$.stats.requests", "{.queues[*].name}", "$['weird key'].x", "$.a[-1]", "$.*"} {
		f.Add(s)
	}
	d, _ := scrape.DecodeJSON([]byte(doc))
	f.Fuzz(func(t *testing.T, path string) {
		p, err := scrape.CompilePath(path)
		if err != nil {
			if !errors.Is(err, scrape.ErrBadPath) {
				t.Errorf("CompilePath(%q) error %v is not ErrBadPath", path, err)
			}
			return
		}
		p.Eval(d)
	})
}
