package ambassador_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/ambassador"
)

var parseEndpointsTests = []struct {
	in      string
	want    []ambassador.Endpoint
	wantErr bool
}{
	{"127.0.0.1:80", []ambassador.Endpoint{{Addr: "127.0.0.1:80"}}, false},
	{" a:1 , b:2*3 ,", []ambassador.Endpoint{{Addr: "a:1"}, {Addr: "b:2", Weight: 3}}, false},
	{"[::1]:80*2", []ambassador.Endpoint{{Addr: "[::1]:80", Weight: 2}}, false},
	{"", nil, false},
	{"nohost", nil, true},
	{"a:", nil, true},
	{":80", nil, true},
	{"a:1*x", nil, true},
	{"a:1*-1", nil, true},
	{"a:1*01", nil, true},
	{"a:1*65535", []ambassador.Endpoint{{Addr: "a:1", Weight: ambassador.MaxWeight}}, false},
	{"a:http", []ambassador.Endpoint{{Addr: "a:http"}}, false},
	{"127.0.0.1:9*92233720368547758", nil, true},
	{"a:1*65536", nil, true},
	{"http://127.0.0.1:8080", nil, true},
	{"127.0.0.1:http:80", nil, true},
	{"127.0.0.1:99999", nil, true},
	{"127.0.0.1:0", nil, true},
	{"127.0.0.1:-1", nil, true},
	{"a/b:80", nil, true},
	// A repeated address is one endpoint with the largest of its weights.
	{"a:1,b:1,a:1*2", []ambassador.Endpoint{{Addr: "a:1", Weight: 2}, {Addr: "b:1"}}, false},
	{"a:1*5,a:1*2,a:1", []ambassador.Endpoint{{Addr: "a:1", Weight: 5}}, false},
}

func TestParseEndpoints(t *testing.T) {
	for _, tc := range parseEndpointsTests {
		got, err := ambassador.ParseEndpoints(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseEndpoints(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		var ce *ambassador.ConfigError
		if err != nil && !errors.As(err, &ce) {
			t.Errorf("ParseEndpoints(%q) error %T, want *ConfigError", tc.in, err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseEndpoints(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func FuzzParseEndpoints(f *testing.F) {
	for _, tc := range parseEndpointsTests {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		eps, err := ambassador.ParseEndpoints(s)
		if err != nil {
			return
		}
		for _, e := range eps {
			if e.Addr == "" || e.Weight < 0 || e.Weight > ambassador.MaxWeight {
				t.Fatalf("ParseEndpoints(%q) accepted %+v", s, e)
			}
		}
	})
}

var parseFileTests = []struct {
	name    string
	in      string
	want    []ambassador.Endpoint
	wantErr bool
}{
	{"json", `[{"addr":"a:1","weight":2},"b:2"]`, []ambassador.Endpoint{{Addr: "a:1", Weight: 2}, {Addr: "b:2"}}, false},
	{"yaml", "- addr: a:1\n  weight: 2\n- b:2\n", []ambassador.Endpoint{{Addr: "a:1", Weight: 2}, {Addr: "b:2"}}, false},
	{"empty list", "[]", []ambassador.Endpoint{}, false},
	{"not a list", `{"addr":"a:1"}`, nil, true},
	{"nested list", `[["a:1"]]`, nil, true},
	{"bad addr", `["a"]`, nil, true},
	{"negative weight", `[{"addr":"a:1","weight":-1}]`, nil, true},
	{"bad weight", `[{"addr":"a:1","weight":"x"}]`, nil, true},
	{"garbage", "\x00\xff[", nil, true},
	{"empty file", "", nil, true},
	{"blank file", " \n\n", nil, true},
	{"only a comment", "# endpoints\n", nil, true},
	{"null", "null", nil, true},
	{"huge weight", `[{"addr":"a:1","weight":9223372036854775807}]`, nil, true},
	{"weight above max", `[{"addr":"a:1","weight":65536}]`, nil, true},
	{"misspelt key", `[{"addr":"a:1","wieght":5}]`, nil, true},
	{"url", `["http://127.0.0.1:8080"]`, nil, true},
	{"port 0", `["127.0.0.1:0"]`, nil, true},
	{"port out of range", `["127.0.0.1:99999"]`, nil, true},
	{"duplicate", `["a:1",{"addr":"a:1","weight":2}]`, []ambassador.Endpoint{{Addr: "a:1", Weight: 2}}, false},
	// Kubernetes lets an endpoint be in two EndpointSlices at once: a file joining them lists it
	// twice, one endpoint of the larger weight.
	{"endpoint in two slices", "- addr: a:1\n  weight: 3\n- b:1\n- addr: a:1\n  weight: 1\n- b:1\n",
		[]ambassador.Endpoint{{Addr: "a:1", Weight: 3}, {Addr: "b:1"}}, false},
}

func TestParseEndpointsFile(t *testing.T) {
	for _, tc := range parseFileTests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ambassador.ParseEndpointsFile([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ambassador.ErrBadFile) {
				t.Errorf("error %v is not ErrBadFile", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" && !tc.wantErr {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseEndpointsFile(f *testing.F) {
	for _, tc := range parseFileTests {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		eps, err := ambassador.ParseEndpointsFile(data)
		if err != nil {
			return
		}
		for _, e := range eps {
			if e.Addr == "" || e.Weight < 0 || e.Weight > ambassador.MaxWeight {
				t.Fatalf("accepted %+v", e)
			}
		}
	})
}

func TestStaticNotifies(t *testing.T) {
	s := ambassador.NewStatic(ambassador.Endpoint{Addr: "b:1"}, ambassador.Endpoint{Addr: "a:1"},
		ambassador.Endpoint{Addr: "a:1", Weight: 2}, ambassador.Endpoint{Addr: "a:1"})
	eps, ch := s.Endpoints()
	// Sorted, a repeated address merged into one endpoint of the largest of its weights (as every
	// source does), zero weights counted as 1.
	if diff := cmp.Diff([]ambassador.Endpoint{{Addr: "a:1", Weight: 2}, {Addr: "b:1", Weight: 1}}, eps); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	s.Set(ambassador.Endpoint{Addr: "a:1", Weight: 2}, ambassador.Endpoint{Addr: "b:1"})
	select {
	case <-ch:
		t.Fatal("an identical set woke watchers")
	default:
	}
	s.Set(ambassador.Endpoint{Addr: "c:1"})
	select {
	case <-ch:
	default:
		t.Fatal("a change did not wake watchers")
	}
	eps, _ = s.Endpoints()
	if diff := cmp.Diff([]ambassador.Endpoint{{Addr: "c:1", Weight: 1}}, eps); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestFileSourceReloads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "endpoints.yaml")
	if err := os.WriteFile(path, []byte("- a:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &ambassador.File{Path: path, Poll: time.Hour} // only the watcher can bring a change in time
	ctx := t.Context()
	errc := make(chan error, 1)
	go func() { errc <- f.Run(ctx) }()
	t.Cleanup(func() {
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	wait := func(want []ambassador.Endpoint) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, ch := f.Endpoints()
			if cmp.Equal(want, got) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("endpoints (-want +got):\n%s", cmp.Diff(want, got))
			}
			select {
			case <-ch:
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	wait([]ambassador.Endpoint{{Addr: "a:1", Weight: 1}})
	// Atomic replace, as ConfigMap updates and careful writers do.
	tmp := filepath.Join(dir, ".tmp")
	os.WriteFile(tmp, []byte(`[{"addr":"b:1","weight":3},"a:1"]`), 0o644)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	wait([]ambassador.Endpoint{{Addr: "a:1", Weight: 1}, {Addr: "b:1", Weight: 3}})
	// A bad file keeps the last good set; a good one after it is taken.
	os.WriteFile(path, []byte("{nonsense"), 0o644)
	os.WriteFile(path, []byte("- c:1\n"), 0o644)
	wait([]ambassador.Endpoint{{Addr: "c:1", Weight: 1}})
}

// TestFileSourceKeepsLastGoodSet: a file truncated to nothing (as a writer's O_TRUNC leaves it),
// or holding a weight past MaxWeight, is a failed read: the set stays, until a good file comes.
func TestFileSourceKeepsLastGoodSet(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "endpoints.yaml")
	if err := os.WriteFile(path, []byte("- a:1\n- b:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &ambassador.File{Path: path, Poll: time.Hour}
	if err := f.Load(); err != nil {
		t.Fatal(err)
	}
	good := []ambassador.Endpoint{{Addr: "a:1", Weight: 1}, {Addr: "b:1", Weight: 1}}
	for _, bad := range []string{"", "\n", `[{"addr":"a:1","weight":9223372036854775807}]`} {
		if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := f.Load(); !errors.Is(err, ambassador.ErrBadFile) {
			t.Errorf("Load of %q: error %v, want ErrBadFile", bad, err)
		}
		got, _ := f.Endpoints()
		if diff := cmp.Diff(good, got); diff != "" {
			t.Errorf("after a file of %q (-want +got):\n%s", bad, diff)
		}
	}
	if err := os.WriteFile(path, []byte("[]"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.Load(); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.Endpoints(); len(got) != 0 {
		t.Errorf("after [] the set is %v, want empty", got)
	}
}
