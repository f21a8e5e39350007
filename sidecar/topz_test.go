package sidecar

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

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

// fakeProc is a /proc directory whose uptime follows the (fake, in a synctest bubble) clock.
type fakeProc struct {
	t     *testing.T
	root  string
	boot  time.Time // when uptime was 0
	procs map[int]fakeStat
}

type fakeStat struct {
	ticks, start uint64 // utime, and the start time in ticks since boot
}

func newFakeProc(t *testing.T, root string, uptime time.Duration) *fakeProc {
	return &fakeProc{t: t, root: root, boot: time.Now().Add(-uptime), procs: map[int]fakeStat{}}
}

// uptime is what /proc/uptime says now, in ticks (it has two decimals).
func (f *fakeProc) uptime() uint64 { return uint64(time.Since(f.boot) / (time.Second / clockTicks)) }

// write writes uptime and every process's stat as they are now.
func (f *fakeProc) write() {
	f.t.Helper()
	up := f.uptime()
	if err := os.WriteFile(filepath.Join(f.root, "uptime"), fmt.Appendf(nil, "%d.%02d 1.00\n", up/clockTicks, up%clockTicks), 0o644); err != nil {
		f.t.Fatal(err)
	}
	for pid, st := range f.procs {
		dir := filepath.Join(f.root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			f.t.Fatal(err)
		}
		stat := fmt.Sprintf("%d (x) R 1 1 1 0 -1 0 0 0 0 0 %d 0 0 0 20 0 1 0 %d 1000 10 0 0 0", pid, st.ticks, st.start)
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
}

// cpuPercent is pid's CPUPercent in procs, or NaN when it is not listed.
func cpuPercent(procs []Process, pid int) float64 {
	for _, p := range procs {
		if p.PID == pid {
			return p.CPUPercent
		}
	}
	return math.NaN()
}

// TestTopzCPUPercentWhoeverAsks: a process busy on one core (one 10 ms tick every 10 ms) shows at
// 100% (within a tick per second), whoever else asks and however often: a Snapshot computes CPU%
// against a sample at least a second old, not against the last request's, which was over a few
// ms of 10 ms ticks (0% or 333%).
func TestTopzCPUPercentWhoeverAsks(t *testing.T) {
	type ask struct {
		after  time.Duration // since the start of the period
		method string
	}
	for _, tc := range []struct {
		name   string
		period time.Duration
		asks   []ask
	}{
		{"one viewer every 3ms", 3 * time.Millisecond, []ask{{0, http.MethodGet}}},
		{"two viewers 5ms apart every 2s", 2 * time.Second, []ask{{0, http.MethodGet}, {5 * time.Millisecond, http.MethodGet}}},
		{"a probe 5ms before each request", time.Second, []ask{{0, http.MethodHead}, {5 * time.Millisecond, http.MethodGet}}},
		{"two viewers 400ms apart every 700ms", 700 * time.Millisecond, []ask{{0, http.MethodGet}, {400 * time.Millisecond, http.MethodGet}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			synctest.Test(t, func(t *testing.T) {
				f := newFakeProc(t, root, time.Hour)
				began := time.Now()
				startTick := f.uptime() - 500 // started 5s ago, busy since
				z := NewTopz(root)
				var bad []string
				for time.Since(began) < 5*time.Second {
					period := time.Now()
					for _, a := range tc.asks {
						time.Sleep(a.after - time.Since(period))
						f.procs[7] = fakeStat{ticks: f.uptime() - startTick, start: startTick}
						f.write()
						rec := httptest.NewRecorder()
						z.ServeHTTP(rec, httptest.NewRequest(a.method, "/topz?format=json", nil))
						if a.method != http.MethodGet {
							continue
						}
						var procs []Process
						if err := json.Unmarshal(rec.Body.Bytes(), &procs); err != nil {
							t.Fatalf("json: %v: %s", err, rec.Body)
						}
						if pct := cpuPercent(procs, 7); !(pct >= 99 && pct <= 101) {
							bad = append(bad, fmt.Sprintf("%.0f%% at %v", pct, time.Since(began)))
						}
					}
					time.Sleep(tc.period - time.Since(period))
				}
				if len(bad) > 0 {
					t.Errorf("busy process shown %d times out of [99%%, 101%%]: %s", len(bad), strings.Join(bad[:min(len(bad), 8)], ", "))
				}
			})
		})
	}
}

// TestTopzPIDReused: a process that got the PID of one that exited, with fewer ticks, is shown
// with its own CPU use (since it started), not a negative one computed against the other's ticks.
func TestTopzPIDReused(t *testing.T) {
	for _, tc := range []struct {
		name     string
		newStart bool    // the second process started later (the kernel's view); false: /proc went back
		want     float64 // CPU% of the second snapshot
	}{
		{"new process with the PID", true, 100 * 0.03 / 0.5}, // 3 ticks in 0.5s
		{"ticks went back", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			synctest.Test(t, func(t *testing.T) {
				f := newFakeProc(t, root, time.Hour)
				f.procs[42] = fakeStat{ticks: 50000, start: 100}
				f.write()
				z := NewTopz(root)
				if _, err := z.Snapshot(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(2 * time.Second)
				st := fakeStat{ticks: 3, start: 100}
				if tc.newStart {
					st.start = f.uptime() - 50 // started 0.5s ago
				}
				f.procs[42] = st
				f.write()
				procs, err := z.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				if got := cpuPercent(procs, 42); math.Abs(got-tc.want) > 1e-6 {
					t.Errorf("CPUPercent = %v, want %v", got, tc.want)
				}
			})
		})
	}
}

// TestTopzNoProcessesIsAnEmptyList: ?format=json of no processes answers [], not null.
func TestTopzNoProcessesIsAnEmptyList(t *testing.T) {
	rec := httptest.NewRecorder()
	NewTopz(t.TempDir()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/topz?format=json", nil))
	if got := strings.TrimSpace(rec.Body.String()); rec.Code != http.StatusOK || got != "[]" {
		t.Errorf("%d %q, want 200 []", rec.Code, got)
	}
}
