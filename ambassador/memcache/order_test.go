package memcache_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/ambassador/memcache"
)

// TestMultiGetOrderAsMemcached: a retrieval split over several servers is answered as one memcached
// holding every key answers it: a VALUE block per hit in the order of the keys asked (a repeated
// key's once per time it is asked), nothing for a miss. get and gat are compared byte for byte with
// a reference memcached holding the same items; gets and gats, whose cas uniques are each server's
// own, with what each key's server answers for that key alone.
func TestMultiGetOrderAsMemcached(t *testing.T) {
	needMemcached(t)
	procs := startMemcached(t, 4)
	shards := procs[1:]
	addr, srv := startProxy(t, "  hash: md5\n  distribution: ketama\n", shards, &memcache.Protocol{})
	proxy, ref := dial(t, addr), dial(t, procs[0].Addr)
	direct := make([]*conn, len(shards))
	for i, p := range shards {
		direct[i] = dial(t, p.Addr)
	}
	var all []string
	for i := range 24 {
		k := fmt.Sprintf("k%d", i)
		all = append(all, k)
		if i%4 == 0 {
			continue // a miss
		}
		set := fmt.Sprintf("set %s %d 0 %d\r\n%s\r\n", k, i, len(k)+6, "value-"+k)
		for _, c := range []*conn{proxy, ref} {
			c.send(set)
			if got := c.reply(); got != "STORED\r\n" {
				t.Fatalf("%q: %q", set, got)
			}
		}
	}
	// owner[k] is the shard that holds k, and own[k] its gets reply for k alone, without its END.
	owner, own := map[string]int{}, map[string]string{}
	for _, k := range all {
		for i, c := range direct {
			c.send("gets " + k + "\r\n")
			if blocks := strings.TrimSuffix(c.reply(), "END\r\n"); blocks != "" {
				owner[k], own[k] = i, blocks
			}
		}
	}
	if !interleaved(all, owner) {
		t.Fatalf("the keys' servers in order %v do not interleave: nothing tests the merge's order", owner)
	}

	reversed := make([]string, len(all))
	for i, k := range all {
		reversed[len(all)-1-i] = k
	}
	keyLists := [][]string{
		{"k1", "k2", "k7", "k3"},
		{"k1", "k0", "k1"},
		{"k5", "k5", "k6", "k4", "k5", "k9"},
		all,
		reversed,
		append(append([]string{}, all...), all...),
	}
	before := srv.Snapshot()[0].Fragments
	for _, keys := range keyLists {
		ks := strings.Join(keys, " ")
		for _, cmd := range []string{"get ", "gat 0 "} {
			line := cmd + ks + "\r\n"
			proxy.send(line)
			ref.send(line)
			if diff := cmp.Diff(ref.reply(), proxy.reply()); diff != "" {
				t.Errorf("%q: memcached's reply (-want) and the proxy's (+got):\n%s", line, diff)
			}
		}
		var want strings.Builder
		for _, k := range keys {
			want.WriteString(own[k])
		}
		want.WriteString("END\r\n")
		for _, cmd := range []string{"gets ", "gats 0 "} {
			line := cmd + ks + "\r\n"
			proxy.send(line)
			if diff := cmp.Diff(want.String(), proxy.reply()); diff != "" {
				t.Errorf("%q: the servers' replies for each key in order (-want) and the proxy's (+got):\n%s", line, diff)
			}
		}
	}
	// The three lists of every key, whose servers interleave, are split in at least two: 4
	// retrievals each.
	if frags := srv.Snapshot()[0].Fragments - before; frags < 3*4*2 {
		t.Errorf("fragments = %d, want the retrievals split", frags)
	}
}

// interleaved reports whether some server holds a key asked before, and one asked after, a key of
// another server: a merge in fragment order then answers out of order.
func interleaved(keys []string, owner map[string]int) bool {
	seen := map[int]bool{}
	last := -1
	for _, k := range keys {
		o, ok := owner[k]
		if !ok || o == last {
			continue
		}
		if seen[o] {
			return true
		}
		seen[o], last = true, o
	}
	return false
}
