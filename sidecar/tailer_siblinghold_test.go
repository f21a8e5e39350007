package sidecar

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Siblings that keep appearing (a small state file next to the log, replaced by rename every
// 200ms: a new inode each time, never settled) hold the active file back for good: the 5s cap is
// per deferred inode.
func TestTailerSiblingsReplacedOnAndOnHoldTheActiveFileForALimitedTime(t *testing.T) {
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	appendFile(t, app, "l0")
	stop := runTailer(t, e.tailer(t))
	defer stop()
	e.waitLines(t, 1)

	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tmp := filepath.Join(e.logs, "state.tmp")
		for {
			select {
			case <-quit:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if os.WriteFile(tmp, []byte("offset=123\n"), 0o644) == nil {
				_ = os.Rename(tmp, app+"-state")
			}
		}
	}()
	defer func() { close(quit); wg.Wait() }()
	time.Sleep(300 * time.Millisecond)
	began := time.Now()
	appendFile(t, app, "l1")
	shipped := false
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if len(readShipped(t, e.out)) >= 2 {
			shipped = true
			break
		}
	}
	if !shipped || time.Since(began) > siblingHold+5*time.Second {
		t.Errorf("active file's line not shipped %v after it was written (siblingHold %v), shipped=%v: held by siblings that keep appearing", time.Since(began), siblingHold, shipped)
	}
}

// holdActive bounds the hold per active file: siblings replaced on and on (a new inode, deferred
// anew, at every scan) release it siblingHold after the first scan that held it; a scan without a
// waiting sibling ends the hold, and a later sibling holds the file anew.
func TestHoldActiveBoundPerFile(t *testing.T) {
	app := &tfile{path: "/logs/app.log", active: true}
	other := &tfile{path: "/logs/other.log", active: true}
	rotated := &tfile{path: "/logs/app.log.1"}
	rs := &tailRun{files: map[fileID]*tfile{{ino: 1}: app, {ino: 2}: other, {ino: 3}: rotated}}
	t0 := time.Now()
	ino := uint64(100)
	scan := func(at time.Duration, siblings ...string) {
		t.Helper()
		now := t0.Add(at)
		rs.deferrals = map[fileID]*deferral{}
		for _, p := range siblings {
			ino++ // a new inode at every scan: the previous one was renamed over
			rs.deferrals[fileID{ino: ino}] = &deferral{path: p, since: now, seen: true}
		}
		holdActive(rs, now)
	}
	want := func(at time.Duration, held bool) {
		t.Helper()
		if app.held != held || other.held || rotated.held {
			t.Errorf("at %v: held app.log %v, other.log %v, app.log.1 %v; want %v, false, false", at, app.held, other.held, rotated.held, held)
		}
	}
	for at := time.Duration(0); at < siblingHold; at += 200 * time.Millisecond {
		scan(at, "/logs/app.log-state", "/logs/other.logx", "/logs/app.log")
		want(at, true)
	}
	for _, at := range []time.Duration{siblingHold, siblingHold + time.Second, 10 * siblingHold} {
		scan(at, "/logs/app.log-state")
		want(at, false)
	}
	scan(10*siblingHold + time.Second)
	want(10*siblingHold+time.Second, false)
	at := 10*siblingHold + 2*time.Second
	scan(at, "/logs/app.log.1")
	want(at, true)
	scan(at+siblingHold-time.Millisecond, "/logs/app.log.1")
	want(at+siblingHold-time.Millisecond, true)
	scan(at+siblingHold, "/logs/app.log.1")
	want(at+siblingHold, false)

	// A sibling deferred for siblingHold already holds nothing (it is no rotation in progress).
	scan(at + 2*siblingHold)
	rs.deferrals = map[fileID]*deferral{{ino: 1 << 40}: {path: "/logs/app.log.2", since: t0, seen: true}}
	holdActive(rs, t0.Add(at+2*siblingHold))
	want(at+2*siblingHold, false)
}
