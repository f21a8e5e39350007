package lifecycle_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/lifecycle"
)

func TestShedderShedsLowestClassFirst(t *testing.T) {
	s, err := lifecycle.NewShedder(10)
	must(t, err)
	admit := func(p lifecycle.Priority) bool {
		err := s.Acquire(p)
		if err != nil && !errors.Is(err, lifecycle.ErrShed) {
			t.Fatalf("Acquire = %v", err)
		}
		return err == nil
	}
	// Fill to half the limit: sheddable work is shed from here on.
	for i := range 5 {
		if !admit(lifecycle.Sheddable) {
			t.Fatalf("sheddable #%d shed below half the limit", i)
		}
	}
	if admit(lifecycle.Sheddable) {
		t.Error("sheddable admitted at half the limit")
	}
	for i := range 4 {
		if !admit(lifecycle.Default) {
			t.Fatalf("default #%d shed below 90%%", i)
		}
	}
	if admit(lifecycle.Default) {
		t.Error("default admitted at 90% of the limit")
	}
	if !admit(lifecycle.Critical) {
		t.Error("critical shed below the limit")
	}
	if admit(lifecycle.Critical) {
		t.Error("critical admitted at the limit")
	}
	if got := s.InFlight(); got != 10 {
		t.Errorf("InFlight = %d, want 10", got)
	}
	s.Release(lifecycle.Critical)
	s.Release(lifecycle.Default)
	if !admit(lifecycle.Default) {
		t.Error("default shed after releases brought load under 90%")
	}
}

func TestShedderConcurrentNeverExceedsLimit(t *testing.T) {
	s, err := lifecycle.NewShedder(8)
	must(t, err)
	var mu sync.Mutex
	var peak, cur int
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				p := lifecycle.Priority(i % 3)
				if s.Acquire(p) != nil {
					continue
				}
				mu.Lock()
				cur++
				peak = max(peak, cur)
				mu.Unlock()
				mu.Lock()
				cur--
				mu.Unlock()
				s.Release(p)
			}
		}()
	}
	wg.Wait()
	if peak > 8 || s.InFlight() != 0 {
		t.Errorf("peak %d (limit 8), in flight at the end %d", peak, s.InFlight())
	}
}

func TestShedderMiddleware(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := lifecycle.NewShedder(2, lifecycle.WithShedRegisterer(reg))
	must(t, err)
	block := make(chan struct{})
	entered := make(chan struct{}, 4)
	h := s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-block
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(class string) *http.Response {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		if class != "" {
			req.Header.Set("X-Priority", class)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	done := make(chan *http.Response, 1)
	go func() { done <- get("critical") }()
	<-entered
	// One critical request in flight: sheddable (cap 1) is shed, default (cap 1) too.
	if resp := get("sheddable"); resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("sheddable under load = %d Retry-After %q, want 503 with Retry-After 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp := get("bogus"); resp.StatusCode != 400 {
		t.Errorf("unknown class = %d, want 400", resp.StatusCode)
	}
	close(block)
	if resp := <-done; resp.StatusCode != 200 {
		t.Errorf("critical = %d", resp.StatusCode)
	}
	if got := counterSum(t, reg, "podblocks_lifecycle_shed_rejected_total"); got != 1 {
		t.Errorf("rejected_total = %v, want 1", got)
	}
}

// counterSum adds up the counters of the family name in reg.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	must(t, err)
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func TestParsePriority(t *testing.T) {
	for in, want := range map[string]lifecycle.Priority{
		"critical": lifecycle.Critical, "Default": lifecycle.Default, "SHEDDABLE": lifecycle.Sheddable,
		"2000001000": lifecycle.Critical, "0": lifecycle.Default, "-10": lifecycle.Sheddable,
	} {
		got, err := lifecycle.ParsePriority(in)
		if err != nil || got != want {
			t.Errorf("ParsePriority(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := lifecycle.ParsePriority("urgent"); err == nil || !strings.Contains(err.Error(), "urgent") {
		t.Errorf("ParsePriority(urgent) error = %v, want one naming the input", err)
	}
	env := map[string]string{"POD_PRIORITY": "2000000000"}
	if p, err := lifecycle.ProcessPriority(func(k string) string { return env[k] }); err != nil || p != lifecycle.Critical {
		t.Errorf("ProcessPriority = %v, %v", p, err)
	}
	if p, _ := lifecycle.ProcessPriority(func(string) string { return "" }); p != lifecycle.Default {
		t.Errorf("ProcessPriority unset = %v, want default", p)
	}
}

func FuzzParsePriority(f *testing.F) {
	for _, s := range []string{"critical", "default", "sheddable", "2000000000", "-1", "", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := lifecycle.ParsePriority(s)
		if err == nil && (p < lifecycle.Sheddable || p > lifecycle.Critical) {
			t.Errorf("ParsePriority(%q) = %v, out of range", s, p)
		}
	})
}

// A registration that fails is NewShedder's error, as it is NewServer's.
func TestShedderRegistrationError(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := lifecycle.NewShedder(4, lifecycle.WithShedRegisterer(reg)); err != nil {
		t.Fatal(err)
	}
	if _, err := lifecycle.NewShedder(4, lifecycle.WithShedRegisterer(reg)); err == nil || !strings.Contains(err.Error(), "register") {
		t.Errorf("second Shedder on the same registry: err = %v, want the registration error", err)
	}
}

// A failed registration leaves none of the Shedder's metrics registered, with any of its
// registerers, and is NewShedder's error whichever registerer it came from.
func TestShedderRegistrationErrorRegistersNothing(t *testing.T) {
	taken := func() *prometheus.Registry { // the second of the three metrics' names is taken
		reg := prometheus.NewRegistry()
		must(t, reg.Register(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "podblocks_lifecycle_shed_rejected_total", Help: "x"}, []string{"class"})))
		return reg
	}
	admittedFree := func(name string, reg *prometheus.Registry) {
		t.Helper()
		err := reg.Register(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "podblocks_lifecycle_shed_admitted_total", Help: "Work admitted by the shedder, by priority class."}, []string{"class"}))
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			t.Errorf("%s: NewShedder failed but left podblocks_lifecycle_shed_admitted_total registered", name)
		}
	}
	bad := taken()
	if _, err := lifecycle.NewShedder(4, lifecycle.WithShedRegisterer(bad)); err == nil {
		t.Fatal("NewShedder = nil error, want the registration error")
	}
	admittedFree("the failing registry", bad)

	bad, good := taken(), prometheus.NewRegistry()
	if _, err := lifecycle.NewShedder(4, lifecycle.WithShedRegisterer(bad), lifecycle.WithShedRegisterer(good)); err == nil {
		t.Error("NewShedder (failing registry first) = nil error, want the registration error")
	}
	bad, good = taken(), prometheus.NewRegistry()
	if _, err := lifecycle.NewShedder(4, lifecycle.WithShedRegisterer(good), lifecycle.WithShedRegisterer(bad)); err == nil {
		t.Error("NewShedder (failing registry second) = nil error, want the registration error")
	}
	admittedFree("the registry before the failing one", good)
}
