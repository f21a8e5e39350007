package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueue/bolt"
)

// workqueueAct shows the work-queue pattern: a durable queue served over HTTP, workers that run an
// ordinary program per item (run()/mount(): WORK_ITEM_FILE in, OUTPUT_DIR out), a crashed worker's
// item coming back when its lease expires, and a poison item dead-lettered.
func workqueueAct() act {
	return act{pattern: "work queue", pkg: "workqueue", run: playWorkqueue}
}

func playWorkqueue(ctx context.Context, s *stage) (string, error) {
	dir := filepath.Join(s.dir, "workqueue")
	if err := os.MkdirAll(filepath.Join(dir, "out"), 0o755); err != nil {
		return "", err
	}
	dbPath := filepath.Join(dir, "queue.db")
	q, err := bolt.Open(ctx, dbPath, bolt.WithLeaseDuration(time.Second), bolt.WithMaxAttempts(2))
	if err != nil {
		return "", err
	}
	defer q.Close()
	api, err := workqueue.NewAPI(q, workqueue.WithMaxWait(5*time.Second))
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ln) }()
	defer func() {
		// As examples/workqueue serve stops: end the long polls, finish what is in flight, then
		// (the deferred q.Close above) close the queue.
		api.StopPolls()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
		<-served
	}()
	url := "http://" + ln.Addr().String()
	s.say("durable queue in %s, served at %s%s", filepath.Base(dbPath), url, workqueue.APIPrefix)

	client, err := workqueue.NewClient(url, nil)
	if err != nil {
		return "", err
	}
	defer client.Close()
	for _, p := range []string{"hello", "container", "patterns", "poison"} {
		if _, err := client.Add(ctx, []byte(p), workqueue.AddOptions{Key: p}); err != nil {
			return "", err
		}
	}
	s.say("enqueued 4 items over HTTP (one of them a poison pill)")

	// A worker leases one item and "crashes": it never acks, and the lease (1s) expires.
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	crashed, err := client.Lease(lctx)
	cancel()
	if err != nil {
		return "", err
	}
	s.say("a worker leased %q (attempt %d) and crashed without acking", crashed.Payload, crashed.Attempt)

	// The real workers: a command per item, upper-casing the payload into OUTPUT_DIR. The command is
	// the tour's own binary (see child.go), since its image has no shell.
	w, err := workqueue.NewExecWorker(selfCommand("upcase"), workqueue.WithOutputRoot(filepath.Join(dir, "out")))
	if err != nil {
		return "", err
	}
	pool, err := workqueue.NewPool(client, w, workqueue.WithConcurrency(3), workqueue.WithPoolMaxAttempts(2),
		workqueue.WithBackoff(func(int) time.Duration { return 100 * time.Millisecond }), workqueue.WithProgressEvery(0),
		workqueue.WithDrainTimeout(0)) // stopped when every item is done, or, out of time, at once
	if err != nil {
		return "", err
	}
	s.keep(nil, pool) // its final state stays on /statusz under -serve
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- pool.Run(pctx) }()
	var st workqueue.Stats
	var statsErr error
	err = waitFor(ctx, "the items to be done", 50*time.Millisecond, func() bool {
		st, statsErr = client.Stats(ctx)
		return statsErr == nil && st.Depth() == 0 && st.Dead == 1
	})
	if err != nil {
		stop()
		<-done
		return "", fmt.Errorf("%w; items still pending: %+v (%v)", err, st, statsErr)
	}
	stop()
	if err := <-done; err != nil {
		return "", err
	}
	c := pool.Counts()
	s.say("3 exec workers: %d acked, %d retried, %d dead-lettered (the crashed worker's item came back on attempt 2)", c.Acked, c.Retried, c.Buried)
	var results []string
	files, _ := filepath.Glob(filepath.Join(dir, "out", "*", "result"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		results = append(results, strings.TrimSpace(string(b)))
	}
	s.say("OUTPUT_DIR results: %s", strings.Join(results, " "))
	dead, _ := client.Dead(ctx, 1)
	if len(dead) == 1 {
		s.say("dead letter: %q after %d attempts (%s)", dead[0].Payload, dead[0].Attempts, dead[0].Reason)
	}
	return fmt.Sprintf("%d items done by exec workers over HTTP, crashed lease recovered, 1 poison item dead-lettered", c.Acked), nil
}
