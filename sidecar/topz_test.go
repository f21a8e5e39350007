package sidecar

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var statTests = []struct {
	name string
	in   string
	want statFields
	err  bool
}{
	{"plain", "42 (sleep) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5000 1000000 200 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0",
		statFields{comm: "sleep", state: "S", ticks: 10, threads: 1, startTick: 5000, rssPages: 200}, false},
	{"spaces and parens in comm", "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 100 50 0 0 20 0 4 0 10 0 3",
		statFields{comm: "a (b) c", state: "R", ticks: 150, threads: 4, startTick: 10, rssPages: 3}, false},
	{"truncated", "7 (x) R 1 2 3", statFields{}, true},
	{"no comm", "7 x R", statFields{}, true},
	{"bad number", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 zz 50 0 0 20 0 4 0 10 0 3", statFields{}, true},
}

func TestParseStat(t *testing.T) {
	for _, tt := range statTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(statFields{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseStat(f *testing.F) {
	for _, tt := range statTests {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseStat(data)
		if err == nil && st.threads < 0 {
			t.Errorf("negative threads from %q", data)
		}
	})
}

func TestTopzListsThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	z := NewTopz("")
	rec := httptest.NewRecorder()
	z.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/topz?format=json", nil))
	var procs []Process
	if err := json.Unmarshal(rec.Body.Bytes(), &procs); err != nil {
		t.Fatalf("json: %v: %s", err, rec.Body)
	}
	var self *Process
	for i := range procs {
		if procs[i].PID == os.Getpid() {
			self = &procs[i]
		}
	}
	if self == nil {
		t.Fatalf("own pid %d not listed", os.Getpid())
	}
	if self.RSSBytes <= 0 || self.Threads < 1 || self.CPUSeconds < 0 {
		t.Errorf("own process row looks wrong: %+v", *self)
	}
	rec = httptest.NewRecorder()
	z.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/topz", nil))
	if !strings.Contains(rec.Body.String(), "COMMAND") || !strings.Contains(rec.Body.String(), self.Command[:min(10, len(self.Command))]) {
		t.Errorf("text table:\n%s", rec.Body)
	}
	rec = httptest.NewRecorder()
	z.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/topz", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST = %d", rec.Code)
	}
}

func TestTopzFromAProcDirectory(t *testing.T) {
	root := t.TempDir()
	write := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "uptime"), "100.00 50.00\n")
	write(filepath.Join(root, "12", "stat"), statTests[0].in)
	write(filepath.Join(root, "12", "cmdline"), "sleep\x00300\x00")
	write(filepath.Join(root, "13", "stat"), "garbage")
	got, err := NewTopz(root).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	want := []Process{{PID: 12, Command: "sleep 300", State: "S", Threads: 1, CPUSeconds: 0.1,
		CPUPercent: 100 * 0.1 / 50, RSSBytes: 200 * int64(os.Getpagesize())}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
