package lifecycle

import (
	"context"
	"testing"
	"time"
)

// readyThenDone is ready and returns nil at once, as a reader of a short input does. Its Ready,
// which the group calls as it starts to wait, gives the channel only once Run has returned, so that
// the group finds the component both ready and done, as a loaded machine may schedule it.
type readyThenDone struct{ ready, returned chan struct{} }

func (r *readyThenDone) Run(context.Context) error {
	close(r.ready)
	close(r.returned)
	return nil
}

func (r *readyThenDone) Ready() <-chan struct{} {
	<-r.returned
	time.Sleep(time.Millisecond) // the group's goroutine closes done right after Run returns
	return r.ready
}

// TestGroupReadyThenFinishedAtOnce: a component that is ready and then finishes before the group
// looked at its Ready finished its work; it is not one that exited before it was ready.
func TestGroupReadyThenFinishedAtOnce(t *testing.T) {
	for i := range 50 {
		var g Group
		if err := g.Add("reader", &readyThenDone{ready: make(chan struct{}), returned: make(chan struct{})}); err != nil {
			t.Fatal(err)
		}
		if err := g.Run(context.Background()); err != nil {
			t.Fatalf("run %d: Run = %v, want nil", i, err)
		}
	}
}
