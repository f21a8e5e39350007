package sidecar

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
)

func fastBackoff(int) time.Duration { return 5 * time.Millisecond }

func runSupervisor(t *testing.T, s *Supervisor) (done <-chan error, cancel func()) {
	t.Helper()
	ctx, cancelCtx := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- s.Run(ctx) }()
	t.Cleanup(cancelCtx)
	return ch, cancelCtx
}

func waitRun(t *testing.T, done <-chan error, d time.Duration) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(d):
		t.Fatal("Run did not return")
	}
}

func TestSupervisorRestartsWithBackoffAndStopsOnDoneFile(t *testing.T) {
	dir := t.TempDir()
	doneFile := filepath.Join(dir, "main-done")
	s, err := NewSupervisor([]Child{
		{Name: "crasher", Path: "sh", Args: []string{"-c", "exit 3"}},
		{Name: "steady", Path: "sleep", Args: []string{"30"}},
	}, WithBackoff(fastBackoff), WithDoneFile(doneFile), WithPollInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	done, _ := runSupervisor(t, s)
	await.True(t, "3 restarts", 20*time.Second, func() bool { return s.Restarts(0) >= 3 })
	if err := os.WriteFile(doneFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitRun(t, done, 20*time.Second)
	if got := s.Restarts(1); got != 0 {
		t.Errorf("steady child restarted %d times", got)
	}
	_, _, rows := s.Statusz()
	if rows[1][3] != "stopped" {
		t.Errorf("steady child status = %q, want stopped", rows[1][3])
	}
}

func TestSupervisorHTTPDoneAndGraceKill(t *testing.T) {
	s, err := NewSupervisor([]Child{{Path: "sh", Args: []string{"-c", "trap '' TERM; while :; do sleep 0.05; done"}}},
		WithGrace(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	done, _ := runSupervisor(t, s)
	await.True(t, "child running", 10*time.Second, func() bool { _, _, rows := s.Statusz(); return rows[0][3] == "running" })
	time.Sleep(50 * time.Millisecond) // let the shell install its trap
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/done", nil))
	if rec.Code != http.StatusAccepted {
		t.Errorf("POST = %d", rec.Code)
	}
	began := time.Now()
	waitRun(t, done, 20*time.Second)
	if d := time.Since(began); d < 150*time.Millisecond {
		t.Errorf("stopped after %v: the child ignoring SIGTERM should have had its grace period", d)
	}
}

func TestSupervisorStopsOnContext(t *testing.T) {
	s, err := NewSupervisor([]Child{{Path: "sleep", Args: []string{"30"}}})
	if err != nil {
		t.Fatal(err)
	}
	done, cancel := runSupervisor(t, s)
	await.True(t, "child running", 10*time.Second, func() bool { _, _, rows := s.Statusz(); return rows[0][3] == "running" })
	cancel()
	waitRun(t, done, 20*time.Second)
}

func TestNewSupervisorValidates(t *testing.T) {
	if _, err := NewSupervisor(nil); err == nil {
		t.Error("no children: want an error")
	}
	if _, err := NewSupervisor([]Child{{Name: "x"}}); err == nil {
		t.Error("no path: want an error")
	}
}
