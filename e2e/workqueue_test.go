package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/podblocks/podblocks/workqueue"
)

// TestWorkQueueWorkersKilled runs `workqueue serve` (bolt) and three worker containers
// (`workqueue work -- /podtool workitem`); workers are SIGKILLed at random and restarted while they
// work; every item is processed and the queue ends empty with no dead letters.
func TestWorkQueueWorkersKilled(t *testing.T) {
	needEngine(t, "workqueue", "worker")
	const items = 60
	dir := t.TempDir()
	data, out := filepath.Join(dir, "data"), filepath.Join(dir, "out")
	for _, d := range []string{data, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	net := network(t, "wq")
	serve := container(t, "wq-serve", append(append([]string{"--network", net, "-p", "127.0.0.1::8080", "-v", data + ":/data"}, user()...),
		image("workqueue"), "serve", "-backend", "bolt", "-path", "/data/q.db", "-http", "0.0.0.0:8080", "-lease", "3s")...)
	base := "http://" + hostAddr(t, serve, 8080)
	c, err := workqueue.NewClient(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := eventually(60*time.Second, func() error { _, err := c.Stats(ctx); return err }); err != nil {
		t.Fatalf("queue server: %v", err)
	}
	for i := range items {
		if _, err := c.Add(ctx, fmt.Appendf(nil, "item-%03d", i), workqueue.AddOptions{}); err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
	}

	var workers []string
	for i := range 3 {
		workers = append(workers, container(t, fmt.Sprintf("wq-worker-%d", i),
			append(append([]string{"--network", net, "--tmpfs", "/tmp", "-v", out + ":/out"}, user()...),
				image("worker"), "work", "-server", "http://"+serve+":8080", "-concurrency", "2", "-max-attempts", "0",
				"--", "/podtool", "workitem", "-out", "/out", "-sleep", "1s")...))
	}

	done := func() int {
		names, _ := filepath.Glob(filepath.Join(out, "done", "item-*"))
		return len(names)
	}
	// Kill a random worker every second (SIGKILL: its leases expire and go back to the queue) and
	// start it again 0.3 s later, at least 3 times, until 8 kills or 80% of the items are done.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills := 0
	for kills < 8 && (kills < 3 || done() < items*4/5) && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
		w := workers[rng.IntN(len(workers))]
		mustDocker(t, "kill", w)
		kills++
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
		mustDocker(t, "start", w)
	}

	err = eventually(3*time.Minute, func() error {
		if n := done(); n < items {
			return fmt.Errorf("%d of %d items done", n, items)
		}
		st, err := c.Stats(ctx)
		if err != nil {
			return err
		}
		if st != (workqueue.Stats{}) {
			return fmt.Errorf("queue not empty: %+v", st)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for i := range items {
		if _, err := os.Stat(filepath.Join(out, "done", fmt.Sprintf("item-%03d", i))); err != nil {
			missing = append(missing, fmt.Sprintf("item-%03d", i))
		}
	}
	if len(missing) > 0 {
		t.Fatalf("items never processed: %v", missing)
	}
	attempts, _ := filepath.Glob(filepath.Join(out, "attempts", "item-*"))
	sort.Strings(attempts)
	if len(attempts) < items {
		t.Fatalf("%d attempts recorded for %d items", len(attempts), items)
	}
	t.Logf("%d items processed with %d worker kills; %d attempts (%d redelivered after a kill)", items, kills, len(attempts), len(attempts)-items)
}
