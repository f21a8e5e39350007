package lifecycle

import "testing"

// TestSequenceAfterStopKeepsStopped: a drain whose goroutine runs only after the group ended (and
// Run set StateStopped) does not turn the state back to draining.
func TestSequenceAfterStopKeepsStopped(t *testing.T) {
	a, err := NewApp(WithAddr("127.0.0.1:0"), WithPropagationDelay(0), WithSignals())
	if err != nil {
		t.Fatal(err)
	}
	a.hooks.SetState(StateStopped)
	a.sequence(true)
	if got := a.hooks.State(); got != StateStopped {
		t.Errorf("state after a late drain sequence = %v, want %v", got, StateStopped)
	}
}
