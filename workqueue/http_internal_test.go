package workqueue

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestPollsForgetEarlyCancelAfterTTL: a cancel that came before its poll is remembered for
// pollTTL, not until a later cancel happens to sweep it: a poll that comes after that waits as
// usual, and one that comes within it is ended at once.
func TestPollsForgetEarlyCancelAfterTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p polls
		for _, tc := range []struct {
			id    string
			after time.Duration
			want  bool // the poll is ended at once
		}{
			{"fresh", pollTTL / 2, true},
			{"stale", pollTTL + time.Second, false},
		} {
			if err := p.cancel(tc.id); err != nil {
				t.Fatal(err)
			}
			time.Sleep(tc.after)
			ended := false
			if err := p.start(tc.id, func() { ended = true }); err != nil {
				t.Fatal(err)
			}
			p.end(tc.id)
			if ended != tc.want {
				t.Errorf("poll %q %v after its cancel: ended at once %v, want %v", tc.id, tc.after, ended, tc.want)
			}
		}
	})
}
