package main

import (
	"strings"
	"testing"

	"github.com/podblocks/podblocks/internal/cmdline/cmdlinetest"
)

// TestRootRefusesUnusableLeaves: a -leaves item that is not an http or https URL with a host (a
// bare host:port above all) exits 2 naming it, before the root serves, instead of the root starting
// and every query answering 503 with the URL parser's message.
func TestRootRefusesUnusableLeaves(t *testing.T) {
	for _, c := range []struct{ leaves, want string }{
		{"127.0.0.1:9101", `scatter: root: parse shards: shard 0: leaf URL "127.0.0.1:9101": want http:// or https:// and a host (as in "http://127.0.0.1:9101")`},
		{"http://127.0.0.1:9101|127.0.0.1:9102", `shard 0: leaf URL "127.0.0.1:9102"`},
		{"http://127.0.0.1:9101,ftp://127.0.0.1:9102", `shard 1: leaf URL "ftp://127.0.0.1:9102"`},
	} {
		status, out := cmdlinetest.Run(t, scatterCmd(t, "root", "-listen", "127.0.0.1:0", "-leaves", c.leaves))
		if status != 2 || !strings.Contains(out, c.want) {
			t.Errorf("scatter root -leaves %q: exit %d, output %q; want 2 and %q", c.leaves, status, out, c.want)
		}
	}
}
