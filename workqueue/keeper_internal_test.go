package workqueue

import (
	"context"
	"testing"
	"time"
)

// slowExtend is a queue whose Extend answers after a sleep (no sync with the caller of hold).
type slowExtend struct {
	*Memory
}

func (q slowExtend) Extend(ctx context.Context, lease string) (time.Time, error) {
	time.Sleep(40 * time.Millisecond)
	return time.Now().Add(time.Second), nil
}

// TestKeeperHoldDuringFire: hold appends to the keeper's due while fire's Extends run and
// write due: the race detector must see no race.
func TestKeeperHoldDuringFire(t *testing.T) {
	o, err := newOutlet("reduce", []StageOption{WithStageRetry(10 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	mem, err := NewMemory()
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	q := slowExtend{mem}
	sc, end := newStageCtx(context.Background())
	defer end()
	k := o.newKeeper(sc)
	defer k.close()
	// A deadline already past: the first fire is due at once (after the retry delay).
	k.start([]heldItem{{q, &Item{ID: "1", Lease: "l1"}}})
	time.Sleep(30 * time.Millisecond) // fire runs, its Extend sleeps
	for i := range 8 {                // grow due past its capacity while extend writes due[0]
		k.hold(heldItem{q, &Item{ID: "x", Lease: "l" + string(rune('a'+i))}})
	}
	time.Sleep(100 * time.Millisecond)
	k.mu.Lock()
	first, n := k.due[0], len(k.due)
	k.mu.Unlock()
	if n != 9 || !first.After(time.Now().Add(100*time.Millisecond)) {
		t.Errorf("due[0] %v from now, %d dues: want the Extend's renewal kept (about 330ms ahead) and 9 dues", time.Until(first), n)
	}
	k.end()
}
