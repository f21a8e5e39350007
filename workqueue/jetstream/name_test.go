package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/podblocks/podblocks/workqueue"
	wqjs "github.com/podblocks/podblocks/workqueue/jetstream"
)

// TestCheckName: CheckName takes the names Open takes, and refuses the others with an ErrInvalid
// naming the name, as Open does, which refuses them before it uses its connection.
func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"work", true},
		{"Thumbs_2-x", true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"", false},
		{"a.b", false},
		{"a b", false},
		{"wq>", false},
	} {
		err := wqjs.CheckName(tc.name)
		if tc.ok != (err == nil) || (err != nil && (!errors.Is(err, workqueue.ErrInvalid) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.name)))) {
			t.Errorf("CheckName(%q) = %v; want ok %v, else an ErrInvalid naming it", tc.name, err, tc.ok)
		}
		if !tc.ok {
			if _, oerr := wqjs.Open(context.Background(), nil, tc.name); oerr == nil || oerr.Error() != err.Error() {
				t.Errorf("Open(%q) = %v, want CheckName's error %v", tc.name, oerr, err)
			}
		}
	}
}
