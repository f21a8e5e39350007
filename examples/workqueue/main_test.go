package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
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
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/internal/syncbuf"
	"github.com/podblocks/podblocks/internal/testbin"

	"github.com/podblocks/podblocks/internal/natstest"
	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueue/bolt"
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

// exitCode waits up to d for p to exit, as what says it should, and returns its exit code.
func (p *proc) exitCode(t *testing.T, d time.Duration, what string) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("still running after %v; want %s", d, what)
	}
	return p.cmd.ProcessState.ExitCode()
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
	metrics := freeport.TCP(t)
	w, _ := start(t, "work", "-server", url, "-concurrency", "2", "-output", outDir, "-metrics", metrics, "--", "sh", "-c", script)
	c, _ := workqueue.NewClient(url, nil)
	defer c.Close()
	await.True(t, "all items acked", 30*time.Second, func() bool {
		s, err := c.Stats(context.Background())
		return err == nil && s.Depth() == 0
	})
	// The pool's metrics, on -metrics: three acked, one retried (fail-once's first attempt).
	scraped := awaitMetrics(t, metrics, `podblocks_workqueue_items_total{outcome="acked"} 3`)
	if !strings.Contains(scraped, `podblocks_workqueue_items_total{outcome="retried"} 1`) {
		t.Errorf("metrics without one retried item:\n%s", scraped)
	}
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

// awaitMetrics scrapes http://addr/metrics until the scrape has every line of want, and returns
// the last scrape.
func awaitMetrics(t *testing.T, addr string, want ...string) string {
	t.Helper()
	var scraped string
	defer func() {
		if t.Failed() {
			t.Logf("last scrape:\n%s", scraped)
		}
	}()
	await.True(t, "the metrics "+strings.Join(want, ", "), 10*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		scraped = string(b)
		for _, w := range want {
			if !strings.Contains(scraped, w) {
				return false
			}
		}
		return true
	})
	return scraped
}

// TestServeMetrics: serve -metrics exposes the queue's metrics, of each backend; a -metrics address
// that cannot be bound is an error naming the subcommand and flag.
func TestServeMetrics(t *testing.T) {
	node, err := natstest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer node.Shutdown()
	for _, tc := range []struct {
		backend string
		args    []string
		want    []string
	}{
		{"memory", nil, []string{`podblocks_workqueue_queue_items{state="ready"} 1`, `podblocks_workqueue_queue_items{state="leased"} 1`, "podblocks_workqueue_queue_added_total 2"}},
		{"bolt", []string{"-path", filepath.Join(t.TempDir(), "q.db")}, []string{`podblocks_workqueue_queue_items{state="ready"} 1`, `podblocks_workqueue_queue_items{state="leased"} 1`, "podblocks_workqueue_queue_added_total 2"}},
		// The lease's pull takes both items (a fetch batch of 10): both are ack-pending.
		{"jetstream", []string{"-nats", node.URL(), "-name", "thumbs"}, []string{`podblocks_workqueue_queue_items{queue="thumbs",state="leased"} 2`, `podblocks_workqueue_queue_stats_errors_total{queue="thumbs"} 0`}},
	} {
		t.Run(tc.backend, func(t *testing.T) {
			metrics := freeport.TCP(t)
			_, url := startServe(t, append([]string{"-backend", tc.backend, "-http", "127.0.0.1:0", "-metrics", metrics}, tc.args...)...)
			c, _ := workqueue.NewClient(url, nil)
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for _, p := range []string{"cat.png", "dog.png"} {
				if _, err := c.Add(ctx, []byte(p), workqueue.AddOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := c.Lease(ctx); err != nil {
				t.Fatal(err)
			}
			awaitMetrics(t, metrics, tc.want...)
		})
	}
	out, err := exec.Command(binary, "serve", "-http", "127.0.0.1:0", "-metrics", "256.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "serve: -metrics:") {
		t.Errorf("serve -metrics 256.0.0.1:0: %v, %s; want an error naming serve and -metrics", err, out)
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
	if code := w.exitCode(t, 30*time.Second, "work to exit once the queue is empty"); code != 0 {
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

// TestWorkOutlivesServeRestart: serve stops gracefully (SIGTERM) and starts again on the same file
// and address; the work process that was running goes on, and processes the items enqueued after the
// restart. (Its workers used to take the stopping server's 503 "closed" for the end of the queue and
// exit, leaving work alive and idle.)
func TestWorkOutlivesServeRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	srv, url := startServe(t, "-backend", "bolt", "-path", path, "-http", "127.0.0.1:0")
	addr := strings.TrimPrefix(url, "http://")
	c, err := workqueue.NewClient(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	add := func(p string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.Add(ctx, []byte(p), workqueue.AddOptions{Key: p}); err != nil {
			t.Fatalf("Add %s: %v", p, err)
		}
	}
	add("before")

	outDir := t.TempDir()
	var stderr syncbuf.Buffer
	cmd := exec.Command(binary, "work", "-server", url, "-concurrency", "2", "-output", outDir, "--", "sh", "-c", `cp "$WORK_ITEM_FILE" "$OUTPUT_DIR/result"`)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(w.done) }()
	t.Cleanup(w.kill)
	processed := func() map[string]bool {
		got := map[string]bool{}
		dirs, _ := os.ReadDir(outDir)
		for _, d := range dirs {
			if b, err := os.ReadFile(filepath.Join(outDir, d.Name(), "result")); err == nil {
				got[string(b)] = true
			}
		}
		return got
	}
	await.True(t, "the first item processed", 30*time.Second, func() bool { return processed()["before"] })

	srv.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-srv.done:
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not exit within 20s of SIGTERM")
	}
	if code := srv.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("serve exited %d after SIGTERM, want 0", code)
	}
	await.True(t, "work to log that the server is away", 30*time.Second, func() bool { return strings.Contains(stderr.String(), "lease failed") })

	startServe(t, "-backend", "bolt", "-path", path, "-http", addr)
	after := []string{"after-1", "after-2", "after-3", "after-4"}
	for _, p := range after {
		add(p)
	}
	await.True(t, "the items enqueued after the restart processed", 60*time.Second, func() bool {
		got := processed()
		for _, p := range after {
			if !got[p] {
				return false
			}
		}
		return true
	})
	select {
	case <-w.done:
		t.Fatalf("work exited (%v); want the same process to go on", w.cmd.ProcessState)
	default:
	}
	if n := strings.Count(stderr.String(), "lease failed"); n != 1 {
		t.Errorf("work logged the outage %d times, want once:\n%s", n, stderr.String())
	}
	w.cmd.Process.Signal(syscall.SIGTERM)
	<-w.done
	if code := w.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("work exited %d after SIGTERM, want 0", code)
	}
}

// slowAck is a queue whose Ack waits for release before acking, and which says when it has closed.
type slowAck struct {
	workqueue.Queue
	acking, release, closed chan struct{}
}

func (s *slowAck) Ack(ctx context.Context, lease string) error {
	close(s.acking)
	<-s.release
	return s.Queue.Ack(ctx, lease)
}

func (s *slowAck) Close() error {
	defer close(s.closed)
	return s.Queue.Close()
}

// TestStopServingLetsAcksInFlightComplete: serve, stopping, lets an ack that is in flight complete
// before it closes the queue, and ends a waiting lease without waiting out its long poll. (It used to
// close the queue first, which refused the ack with 409: the worker's item would be done again.)
func TestStopServingLetsAcksInFlightComplete(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	b, err := bolt.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	q := &slowAck{Queue: b, acking: make(chan struct{}), release: make(chan struct{}), closed: make(chan struct{})}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	api, err := workqueue.NewAPI(q)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	c, err := workqueue.NewClient("http://"+ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	leased := make(chan error, 1)
	go func() { _, err := c.Lease(ctx); leased <- err }() // waits: the queue is empty
	acked := make(chan error, 1)
	go func() { acked <- c.Ack(ctx, it.Lease) }()
	<-q.acking

	start := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- stopServing(srv, api, q, 10*time.Second) }()
	select { // a queue closed now would refuse the ack
	case <-q.closed:
	case <-time.After(500 * time.Millisecond):
	}
	close(q.release)
	if err := <-acked; err != nil {
		t.Errorf("the ack in flight when serve stopped: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("stopServing: %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("stopping took %v: it waited for the lease's long poll", el)
	}
	if err := <-leased; !errors.Is(err, workqueue.ErrUnavailable) {
		t.Errorf("the waiting lease: %v, want ErrUnavailable", err)
	}
	<-served
	select {
	case <-q.closed:
	default:
		t.Fatal("the queue was not closed")
	}
	b, err = bolt.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if s, _ := b.Stats(ctx); s.Depth() != 0 {
		t.Errorf("the file holds %+v after the ack, want nothing", s)
	}
}
