package ambassador_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/ambassador"
	"github.com/podblocks/podblocks/ambassadortest"
	"github.com/prometheus/client_golang/prometheus"
)

func TestMetricsAndStatusz(t *testing.T) {
	good := ambassadortest.NewHTTPBackend(t, "good")
	bad := ambassadortest.NewHTTPBackend(t, "bad")
	bad.Set(ambassadortest.Behavior{Status: 500})
	reg := prometheus.NewRegistry()
	c, err := ambassador.NewCluster(ambassador.NewStatic(good.Endpoint(), bad.Endpoint()), ambassador.WithName("web"),
		ambassador.WithRegisterer(reg), ambassador.WithOutlier(ambassador.Outlier{ConsecutiveFailures: 2}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := ambassador.NewHTTPProxy("127.0.0.1:0", c, ambassador.WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	run(t, p)
	cl := client(t)
	for range 6 {
		resp, err := cl.Get("http://" + p.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// Round robin sends 2 to bad (two 500s: ejected), then everything to good.
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{bad.Addr: "bad", good.Addr: "good"}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["cluster"] != "web" || m.GetCounter() == nil {
				continue
			}
			got[strings.TrimPrefix(mf.GetName(), "podblocks_ambassador_")+"/"+names[labels["endpoint"]]] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"requests_total/bad": 2, "requests_total/good": 4,
		"errors_total/bad": 2, "errors_total/good": 0,
		"ejections_total/bad": 1, "ejections_total/good": 0,
		"retries_total/": 0,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
	title, header, rows := c.Statusz()
	if title != "ambassador cluster web" || len(rows) != 2 {
		t.Errorf("Statusz = %q %v %v", title, header, rows)
	}
	for _, r := range rows {
		if r[0] == bad.Addr {
			if diff := cmp.Diff([]string{bad.Addr, "1", "false", "true", "true", "1", "0"}, r); diff != "" {
				t.Errorf("bad endpoint row (-want +got):\n%s", diff)
			}
		}
	}
	// A second cluster with the same name on the same registry is a config error, not a panic.
	_, err = ambassador.NewCluster(ambassador.NewStatic(), ambassador.WithName("web"), ambassador.WithRegisterer(reg))
	var ce *ambassador.ConfigError
	if !errors.As(err, &ce) {
		t.Errorf("duplicate registration error = %v, want *ConfigError", err)
	}
}

// TestPanicGauge: podblocks_ambassador_cluster_panic is 0 while enough endpoints are available
// and 1 once the cluster balances over every endpoint for want of available ones.
func TestPanicGauge(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := ambassador.NewCluster(ambassador.NewStatic(eps("a:1", "b:1")...), ambassador.WithName("web"),
		ambassador.WithRegisterer(reg), ambassador.WithOutlier(ambassador.Outlier{ConsecutiveFailures: 1, MaxEjectionPercent: 100}),
		ambassador.WithPanicThreshold(60))
	if err != nil {
		t.Fatal(err)
	}
	gauge := func() string {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "podblocks_ambassador_cluster_panic" {
				return fmt.Sprint(mf.GetMetric()[0].GetGauge().GetValue())
			}
		}
		return "missing"
	}
	if got := gauge(); got != "0" {
		t.Errorf("panic gauge with both endpoints available = %s, want 0", got)
	}
	c.Report(backendOf(t, c, "a:1"), false, 0) // 1 of 2 available: under 60%
	if _, panicMode := c.Status(); !panicMode {
		t.Fatal("no panic mode with 1 of 2 endpoints available and a 60% threshold")
	}
	if got := gauge(); got != "1" {
		t.Errorf("panic gauge in panic mode = %s, want 1", got)
	}
}
