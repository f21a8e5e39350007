package sidecar

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat times (100 on every Linux architecture Go runs on).
const clockTicks = 100

// Process is one row of Topz.
type Process struct {
	PID        int     `json:"pid"`
	Command    string  `json:"command"`
	State      string  `json:"state"`
	Threads    int     `json:"threads"`
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUPercent is the CPU use over the last second or more (see Topz), or since the process
	// started; 100 is one full core. It is never negative.
	CPUPercent float64 `json:"cpu_percent"`
	RSSBytes   int64   `json:"rss_bytes"`
}

// Topz lists the processes visible in /proc (in a pod sharing its PID namespace: every container's
// processes) with CPU and memory use, as text or JSON (?format=json). It is an http.Handler, safe
// for concurrent use; snapshots are taken one at a time.
//
// # CPU use
//
// /proc counts CPU time in ticks of 10 ms, so CPU use over a few ms reads 0% or several hundred
// percent. A snapshot therefore computes CPUPercent against an earlier sample at least a second
// old, the newest such, whoever took it: every snapshot (a GET, a HEAD, a probe, a second dashboard)
// is a sample, and the last three samples taken half a second or more apart are kept. A lone viewer
// asking every N seconds (N >= 1) sees the use over the last N seconds; with others asking in
// between, or a viewer asking more often, the span is at least a second and less than one and a
// half seconds plus the longest pause between two snapshots (under 2.5 s when they come at least
// once a second). Without such a sample (in the first second after the first snapshot, or for a process
// started since the sample), CPUPercent is the average since the process started. A process is told
// from an earlier one that had its PID by its start time.
type Topz struct {
	procRoot string

	mu sync.Mutex
	// kept are the last samples kept, the newest first (nil until taken); each was taken at least
	// topzKeepEvery after the next. Three span at least topzMinAge, so one is old enough.
	kept [3]*cpuSample
}

// topzMinAge is how old a sample must be for a snapshot to compute CPU use against it.
const topzMinAge = time.Second

// topzKeepEvery is how long after the newest kept sample a snapshot is kept as a sample. Half of
// topzMinAge keeps the span under topzMinAge + topzKeepEvery plus the pause between snapshots.
const topzKeepEvery = topzMinAge / 2

// cpuSample is the CPU time of every process at one moment.
type cpuSample struct {
	at  time.Time
	cpu map[procID]float64 // seconds
}

// procID tells a process from another that had the same PID before: its start time (in ticks since
// boot) differs.
type procID struct {
	pid       int
	startTick uint64
}

// baseline returns the newest kept sample at least topzMinAge older than now, or nil.
func (z *Topz) baseline(now time.Time) *cpuSample {
	for _, s := range z.kept {
		if s != nil && now.Sub(s.at) >= topzMinAge {
			return s
		}
	}
	return nil
}

// NewTopz returns a Topz reading procRoot ("" means "/proc").
func NewTopz(procRoot string) *Topz {
	if procRoot == "" {
		procRoot = "/proc"
	}
	return &Topz{procRoot: procRoot}
}

// statFields is what Topz takes from /proc/PID/stat.
type statFields struct {
	comm      string
	state     string
	ticks     uint64 // utime + stime
	threads   int
	startTick uint64
	rssPages  int64
}

// parseStat parses the content of /proc/PID/stat. The command (field 2) is in parentheses and may
// itself contain spaces and parentheses, so fields are counted from the last ')'.
func parseStat(data []byte) (statFields, error) {
	open := bytes.IndexByte(data, '(')
	closing := bytes.LastIndexByte(data, ')')
	if open < 0 || closing < open {
		return statFields{}, fmt.Errorf("stat: no command field")
	}
	f := strings.Fields(string(data[closing+1:]))
	// f[0] is field 3 (state); field N is f[N-3].
	if len(f) < 22 {
		return statFields{}, fmt.Errorf("stat: %d fields, want at least 24", len(f)+2)
	}
	num := func(n int) (uint64, error) { return strconv.ParseUint(f[n-3], 10, 64) }
	utime, err1 := num(14)
	stime, err2 := num(15)
	threads, err3 := num(20)
	start, err4 := num(22)
	rss, err5 := strconv.ParseInt(f[24-3], 10, 64)
	for _, err := range []error{err1, err2, err3, err4, err5} {
		if err != nil {
			return statFields{}, fmt.Errorf("stat: %w", err)
		}
	}
	return statFields{comm: string(data[open+1 : closing]), state: f[0], ticks: utime + stime,
		threads: int(min(threads, 1<<31)), startTick: start, rssPages: rss}, nil
}

// Snapshot reads every process, sorted by PID (an empty list when there is none). Processes that
// exit while being read are left out.
func (z *Topz) Snapshot() ([]Process, error) {
	// Read under the lock, after taking now: a sample must hold the CPU times of its moment, later
	// than the samples taken before it.
	z.mu.Lock()
	defer z.mu.Unlock()
	now := time.Now()
	ents, err := os.ReadDir(z.procRoot)
	if err != nil {
		return nil, fmt.Errorf("topz: %w", err)
	}
	uptime := 0.0
	if data, err := os.ReadFile(filepath.Join(z.procRoot, "uptime")); err == nil {
		if f := strings.Fields(string(data)); len(f) > 0 {
			uptime, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	page := int64(os.Getpagesize())
	base := z.baseline(now)
	cur := &cpuSample{at: now, cpu: make(map[procID]float64, len(ents))}
	out := []Process{}
	for _, de := range ents {
		pid, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(z.procRoot, de.Name(), "stat"))
		if err != nil {
			continue
		}
		st, err := parseStat(data)
		if err != nil {
			continue
		}
		cmd := st.comm
		if cl, err := os.ReadFile(filepath.Join(z.procRoot, de.Name(), "cmdline")); err == nil && len(cl) > 0 {
			cmd = strings.TrimSpace(strings.ReplaceAll(string(cl), "\x00", " "))
		}
		cpu := float64(st.ticks) / clockTicks
		id := procID{pid, st.startTick}
		cur.cpu[id] = cpu
		pct := 0.0
		if before, ok := base.cpuOf(id); ok {
			pct = 100 * (cpu - before) / now.Sub(base.at).Seconds()
		} else if age := uptime - float64(st.startTick)/clockTicks; age > 0 {
			pct = 100 * cpu / age
		}
		out = append(out, Process{PID: pid, Command: cmd, State: st.state, Threads: st.threads,
			CPUSeconds: cpu, CPUPercent: max(pct, 0), RSSBytes: st.rssPages * page})
	}
	if z.kept[0] == nil || now.Sub(z.kept[0].at) >= topzKeepEvery {
		copy(z.kept[1:], z.kept[:])
		z.kept[0] = cur
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}

// cpuOf returns the CPU seconds of process id in s (nil: none).
func (s *cpuSample) cpuOf(id procID) (float64, bool) {
	if s == nil {
		return 0, false
	}
	cpu, ok := s.cpu[id]
	return cpu, ok
}

// ServeHTTP answers GET with the process table (text, or JSON with ?format=json).
func (z *Topz) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	procs, err := z.Snapshot()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if r.URL.Query().Get("format") == "json" {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(procs)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PID\tSTATE\tTHREADS\tCPU%\tCPU(s)\tRSS(KiB)\t COMMAND")
	for _, p := range procs {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%.1f\t%.2f\t%d\t %s\n", p.PID, p.State, p.Threads, p.CPUPercent, p.CPUSeconds, p.RSSBytes>>10, p.Command)
	}
	_ = tw.Flush()
}
