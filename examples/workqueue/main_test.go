package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/testbin"

	"github.com/podblocks/podblocks/internal/natstest"
	"github.com/podblocks/podblocks/workqueue"
)

var binary string

func TestMain(m *testing.M) { testbin.Main(m, "workqueue", &binary) }

// proc is a running example binary.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func start(t *testing.T, args ...string) (*proc, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	return p, bufio.NewScanner(out)
}

func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// startServe starts `workqueue serve` and returns its base URL.
func startServe(t *testing.T, args ...string) (*proc, string) {
	t.Helper()
	p, sc := start(t, append([]string{"serve"}, args...)...)
	if !sc.Scan() {
		t.Fatalf("serve printed nothing (%v)", sc.Err())
	}
	line := sc.Text()
	i := strings.Index(line, "http://")
	if i < 0 {
		t.Fatalf("serve printed %q, want its URL", line)
	}
	go func() {
		for sc.Scan() {
		}
	}()
	return p, line[i:]
}

func TestServeEnqueueWork(t *testing.T) {
	_, url := startServe(t, "-backend", "bolt", "-path", filepath.Join(t.TempDir(), "q.db"), "-http", "127.0.0.1:0")
	for _, p := range []string{"alpha", "beta", "fail-once"} {
		cmd := exec.Command(binary, "enqueue", "-server", url, "-key", p)
		cmd.Stdin = strings.NewReader(p)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("enqueue: %v: %s", err, out)
		}
	}
	outDir := t.TempDir()
	script := `p=$(cat "$WORK_ITEM_FILE")
if [ "$p" = fail-once ] && [ "$WORK_ITEM_ATTEMPT" = 1 ]; then exit 1; fi
echo "$p" | tr a-z A-Z > "$OUTPUT_DIR/result"`
	w, _ := start(t, "work", "-server", url, "-concurrency", "2", "-output", outDir, "--", "sh", "-c", script)
	c, _ := workqueue.NewClient(url, nil)
	defer c.Close()
	await.True(t, "all items acked", 30*time.Second, func() bool {
		s, err := c.Stats(context.Background())
		return err == nil && s.Depth() == 0
	})
	w.cmd.Process.Signal(syscall.SIGTERM)
	<-w.done
	if code := w.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("work exited %d after SIGTERM, want 0", code)
	}
	var got []string
	dirs, _ := os.ReadDir(outDir)
	for _, d := range dirs {
		b, _ := os.ReadFile(filepath.Join(outDir, d.Name(), "result"))
		got = append(got, strings.TrimSpace(string(b)))
	}
	if strings.Join(got, ",") != "ALPHA,BETA,FAIL-ONCE" {
		t.Errorf("results %v, want ALPHA, BETA and FAIL-ONCE", got)
	}
}

// killItems is how many items the kill tests push through. The issue asks for 10,000; the default
// keeps `go test ./...` inside CI's budget on a shared 2-core machine. Set PODBLOCKS_WQ_KILL_ITEMS=10000
// for the full size.
func killItems(t *testing.T) int {
	if s := os.Getenv("PODBLOCKS_WQ_KILL_ITEMS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("PODBLOCKS_WQ_KILL_ITEMS=%q", s)
		}
		return n
	}
	if testing.Short() {
		return 300
	}
	return 1000
}

// killTest enqueues n items, runs 3 worker processes of concurrency 4 whose command appends the
// payload to a log, SIGKILLs a random worker every 100-400ms (restarting it), and optionally SIGKILLs
// and restarts the server once. Every item must be processed at least once, and duplicates are
// bounded by what the kills can cause: the items in flight in each killed process.
func killTest(t *testing.T, restartServer func() (*proc, string), serverKill bool) {
	n := killItems(t)
	const workers, conc = 3, 4
	srv, url := restartServer()
	c, _ := workqueue.NewClient(url, nil)
	ctx := context.Background()
	for i := range n {
		if _, err := c.Add(ctx, fmt.Appendf(nil, "item-%05d", i), workqueue.AddOptions{}); err != nil {
			t.Fatalf("Add %d: %v", i, err)
		}
	}
	c.Close()
	logPath := filepath.Join(t.TempDir(), "processed.log")
	// A SIGKILLed worker cannot remove the work directories of the items it had in flight: they go
	// under the test's own TMPDIR, which the test removes, not under the machine's /tmp.
	workTmp := t.TempDir()
	script := `printf '%s\n' "$(cat "$WORK_ITEM_FILE")" >> "$LOG"`
	startWorker := func() *proc {
		cmd := exec.Command(binary, "work", "-server", url, "-concurrency", strconv.Itoa(conc), "-max-attempts", "0", "--", "sh", "-c", script)
		cmd.Env = append(os.Environ(), "LOG="+logPath, "TMPDIR="+workTmp)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := &proc{cmd: cmd, done: make(chan struct{})}
		go func() { cmd.Wait(); close(p.done) }()
		return p
	}
	var mu sync.Mutex
	ws := make([]*proc, workers)
	for i := range ws {
		ws[i] = startWorker()
	}
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, w := range ws {
			w.kill()
		}
	}()
	seen := func() (map[string]int, int) {
		b, _ := os.ReadFile(logPath)
		m := map[string]int{}
		lines := 0
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" {
				m[l]++
				lines++
			}
		}
		return m, lines
	}
	start := time.Now()
	kills, serverKills := 0, 0
	deadline := start.Add(5 * time.Minute)
	for {
		m, _ := seen()
		if len(m) >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v only %d of %d items were processed (%d kills)", time.Since(start), len(m), n, kills)
		}
		time.Sleep(time.Duration(100+rand.IntN(300)) * time.Millisecond)
		if serverKill && serverKills == 0 && len(m) > n/3 {
			srv.cmd.Process.Signal(syscall.SIGKILL)
			<-srv.done
			srv, _ = restartServer()
			serverKills++
			continue
		}
		i := rand.IntN(workers)
		mu.Lock()
		ws[i].cmd.Process.Signal(syscall.SIGKILL)
		<-ws[i].done
		ws[i] = startWorker()
		mu.Unlock()
		kills++
	}
	el := time.Since(start)
	// Orphaned commands of killed workers may still be appending: let them finish before counting.
	time.Sleep(500 * time.Millisecond)
	m, lines := seen()
	for i := range n {
		if m[fmt.Sprintf("item-%05d", i)] == 0 {
			t.Errorf("item-%05d was never processed", i)
		}
	}
	dups := lines - len(m)
	bound := (kills + serverKills*workers) * conc
	t.Logf("%d items processed in %v with %d worker kills and %d server kills: %d duplicates (bound %d)", n, el.Round(time.Millisecond), kills, serverKills, dups, bound)
	if dups > bound {
		t.Errorf("%d duplicates, more than the %d that %d kills of %d in-flight items can explain", dups, bound, kills, conc)
	}
	if len(m) != n {
		t.Errorf("%d distinct payloads processed, want %d", len(m), n)
	}
}

func TestKillWorkersBolt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	port := ""
	killTest(t, func() (*proc, string) {
		addr := "127.0.0.1:0"
		if port != "" {
			addr = "127.0.0.1:" + port
		}
		p, url := startServe(t, "-backend", "bolt", "-path", path, "-http", addr, "-lease", "2s")
		port = url[strings.LastIndex(url, ":")+1:]
		return p, url
	}, true)
}

func TestKillWorkersJetStream(t *testing.T) {
	node, err := natstest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer node.Shutdown()
	killTest(t, func() (*proc, string) {
		return startServe(t, "-backend", "jetstream", "-nats", node.URL(), "-http", "127.0.0.1:0", "-lease", "2s")
	}, false)
}

// TestServeFromItemSource feeds serve from a book-style item source (GET /api/v1/items).
func TestServeFromItemSource(t *testing.T) {
	items := map[string]string{"alpha": `{"n":1}`, "beta": `{"n":2}`}
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/items" {
			json.NewEncoder(w).Encode(workqueue.ItemList{Kind: "ItemList", APIVersion: "v1", Items: []string{"alpha", "beta"}})
			return
		}
		name := strings.TrimPrefix(r.URL.Path, "/api/v1/items/")
		json.NewEncoder(w).Encode(workqueue.ItemData{Kind: "Item", APIVersion: "v1", Data: json.RawMessage(items[name])})
	}))
	defer src.Close()
	_, url := startServe(t, "-backend", "memory", "-http", "127.0.0.1:0", "-source", src.URL, "-poll", "100ms")
	c, _ := workqueue.NewClient(url, nil)
	defer c.Close()
	got := map[string]string{}
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		it, err := c.Lease(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		got[it.Key] = string(it.Payload)
		c.Ack(context.Background(), it.Lease)
	}
	if got["alpha"] != items["alpha"] || got["beta"] != items["beta"] {
		t.Errorf("queued from the source %v, want %v", got, items)
	}
}

// TestWorkExitsWhenIdle: with -exit-when-idle, a worker finishes the queue and exits 0 by itself, as the
// pods of a Kubernetes Job must.
func TestWorkExitsWhenIdle(t *testing.T) {
	_, url := startServe(t, "-backend", "memory", "-http", "127.0.0.1:0")
	for _, p := range []string{"a", "b", "c"} {
		cmd := exec.Command(binary, "enqueue", "-server", url, "-key", p)
		cmd.Stdin = strings.NewReader(p)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("enqueue: %v: %s", err, out)
		}
	}
	outDir := t.TempDir()
	w, _ := start(t, "work", "-server", url, "-exit-when-idle", "300ms", "-output", outDir, "--", "sh", "-c", `cp "$WORK_ITEM_FILE" "$OUTPUT_DIR/result"`)
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		t.Fatal("work did not exit once the queue was empty")
	}
	if code := w.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("work exited %d, want 0", code)
	}
	dirs, _ := os.ReadDir(outDir)
	if len(dirs) != 3 {
		t.Errorf("%d items processed before exiting, want 3", len(dirs))
	}
	if out, err := exec.Command(binary, "work", "-server", url, "-exit-when-idle", "-1s", "--", "true").CombinedOutput(); err == nil {
		t.Errorf("negative -exit-when-idle accepted: %s", out)
	}
}
