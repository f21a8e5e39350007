package memcache_test

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
)

// mergeBothWays merges the fragments of r twice: as they are, with the VALUE blocks that
// ReadResponse recorded, and from copies of their replies alone, which Merge parses (as it did
// before it recorded blocks). It returns both replies.
func mergeBothWays(p *memcache.Protocol, r *twemproxy.Request, frags []*twemproxy.Request) (recorded, parsed string) {
	bare := make([]*twemproxy.Request, len(frags))
	for f, fr := range frags {
		bare[f] = &twemproxy.Request{Resp: bytes.Clone(fr.Resp), Kind: fr.Kind}
	}
	r.Resp = append(r.Resp[:0], "stale"...)
	p.Merge(r, frags)
	recorded = string(r.Resp)
	r.Resp = append(r.Resp[:0], "stale"...)
	p.Merge(r, bare)
	return recorded, string(r.Resp)
}

// randomReply is a server's reply to a fragment of keys: mostly what memcached sends (a block per
// hit, in order, under END), and sometimes what it does not: blocks in another order, repeated, or
// for keys not asked; VALUE lines with extra spaces, a bare \n, or a cas unique; data blocks
// holding reply words, or not ending with \r\n; an error line, or a last line that only ends with
// END.
func randomReply(rng *rand.Rand, keys []string, cas bool) string {
	var blocks []string
	sp := func() string {
		if rng.IntN(8) == 0 {
			return "  "
		}
		return " "
	}
	block := func(k string) string {
		data := []string{"v", "", "VALUE a 0 1\r\nx", "END\r\n", "\r\n", k + k}[rng.IntN(6)]
		line := "VALUE" + sp() + k + sp() + fmt.Sprint(rng.IntN(3)) + sp() + fmt.Sprint(len(data))
		if cas {
			line += sp() + fmt.Sprint(rng.IntN(1000))
		}
		if rng.IntN(10) == 0 {
			line += " "
		}
		eol, trailer := "\r\n", "\r\n"
		if rng.IntN(10) == 0 {
			eol = "\n"
		}
		if rng.IntN(20) == 0 {
			trailer = []string{"EN", "\n\n", "xx"}[rng.IntN(3)]
		}
		return line + eol + data + trailer
	}
	for _, k := range keys {
		if rng.IntN(4) != 0 {
			blocks = append(blocks, block(k))
		}
	}
	switch rng.IntN(10) {
	case 0:
		rng.Shuffle(len(blocks), func(i, j int) { blocks[i], blocks[j] = blocks[j], blocks[i] })
	case 1:
		blocks = append(blocks, block([]string{"a", "ab", "zz", "VALUE"}[rng.IntN(4)]))
	case 2:
		if len(blocks) > 0 {
			i := rng.IntN(len(blocks))
			blocks = append(blocks[:i+1], blocks[i:]...)
		}
	}
	last := "END\r\n"
	if rng.IntN(15) == 0 {
		last = []string{"SERVER_ERROR busy\r\n", "xEND\r\n", "END\n", "D\r\n", "\n"}[rng.IntN(5)]
	}
	return strings.Join(blocks, "") + last
}

// Merge answers from the blocks ReadResponse recorded exactly as it answers by parsing the
// fragments' replies, as it did before it recorded them: for replies as memcached sends them
// (repeated keys, misses, gets with cas) and for odd ones, with or without MaxReplySize cut in,
// and for a reply read after something else in Resp.
func TestMergeRecordedAsParsed(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 1))
	names := []string{"a", "ab", "b", "k1", "k10", "VALUE", "END", "0"}
	cmds := []string{"get", "gets", "gat 0", "gats 0"}
	merged, usedRecorded := 0, 0
	for iter := range 10000 {
		p := &memcache.Protocol{}
		if rng.IntN(10) == 0 {
			p.MaxValueSize, p.MaxReplySize = 64, 40+rng.IntN(200)
		}
		cmd := cmds[rng.IntN(len(cmds))]
		n := 2 + rng.IntN(12)
		line := cmd
		for range n {
			line += " " + names[rng.IntN(len(names))]
		}
		r := &twemproxy.Request{}
		if err := p.ReadRequest(bufio.NewReader(strings.NewReader(line+"\r\n")), r); err != nil || r.Local {
			t.Fatalf("ReadRequest(%q): %v, local reply %q", line, err, r.Resp)
		}
		nf := 1 + rng.IntN(4)
		keys := make([][]int, nf)
		for i := range r.Keys {
			f := rng.IntN(nf)
			r.KeyFrag = append(r.KeyFrag, f)
			keys[f] = append(keys[f], i)
		}
		frags := make([]*twemproxy.Request, nf)
		ok := true
		for f := range frags {
			frags[f] = &twemproxy.Request{}
			p.Fragment(r, keys[f], frags[f])
			if rng.IntN(50) == 0 {
				// ReadResponse appends to what Resp holds: blocks, but not from its start.
				frags[f].Resp = append(frags[f].Resp, "VALUE a 0 1\r\nx\r\n"[:rng.IntN(16)]...)
			}
			var ks []string
			for _, i := range keys[f] {
				ks = append(ks, string(r.Key(i)))
			}
			reply := randomReply(rng, ks, strings.HasPrefix(cmd, "gets") || strings.HasPrefix(cmd, "gats"))
			if err := p.ReadResponse(bufio.NewReader(strings.NewReader(reply)), frags[f]); err != nil {
				ok = false // a reply the proxy refuses: the fragment fails, and Merge answers its error
				break
			}
			if sc := frags[f].Scratch; len(sc) > 0 && sc[0] == (twemproxy.Span{Start: -1, End: len(frags[f].Resp)}) {
				usedRecorded++
			}
		}
		if !ok {
			continue
		}
		merged++
		got, want := mergeBothWays(p, r, frags)
		if got != want {
			t.Fatalf("iteration %d: %q split %v:\nfragment replies %q\nmerged from recorded blocks %q\nmerged by parsing %q",
				iter, line, r.KeyFrag, replies(frags), got, want)
		}
	}
	// Most replies are memcached's, recorded and merged from the record: the comparison is not
	// between two parses.
	if merged < 5000 || usedRecorded < merged {
		t.Fatalf("%d requests merged, %d fragment replies recorded: want at least 5000 and one per merge", merged, usedRecorded)
	}
}

func replies(frags []*twemproxy.Request) []string {
	var out []string
	for _, f := range frags {
		out = append(out, string(f.Resp))
	}
	return out
}

// FuzzMergeRecorded reads two fragments' replies (a and b) of a split retrieval with ReadResponse
// and checks that Merge answers from the recorded blocks as it does by parsing the replies.
func FuzzMergeRecorded(f *testing.F) {
	f.Add("gets k1 k2 k1 k3", []byte{0, 1, 0, 1}, []byte("VALUE k1 0 1 5\r\nx\r\nVALUE k1 0 1 5\r\nx\r\nEND\r\n"), []byte("VALUE k3 0 1 6\r\ny\r\nEND\r\n"))
	f.Add("get a ab a", []byte{0, 0, 1}, []byte("VALUE ab 0 1\r\nx\r\nVALUE  a 0 1\r\nxEND\r\n"), []byte("xEND\r\n"))
	f.Add("get a b", []byte{0, 1}, []byte("VALUE a 0 3\r\nabcEND\r\n"), []byte("SERVER_ERROR x\r\n"))
	f.Fuzz(func(t *testing.T, line string, frag []byte, a, b []byte) {
		p := &memcache.Protocol{MaxValueSize: 64}
		r := &twemproxy.Request{}
		if err := p.ReadRequest(bufio.NewReader(strings.NewReader(line+"\r\n")), r); err != nil || r.Local || len(r.Keys) < 2 || len(frag) == 0 {
			return
		}
		keys := make([][]int, 2)
		for i := range r.Keys {
			f := int(frag[i%len(frag)] % 2)
			r.KeyFrag = append(r.KeyFrag, f)
			keys[f] = append(keys[f], i)
		}
		frags := []*twemproxy.Request{{}, {}}
		for i, reply := range [][]byte{a, b} {
			p.Fragment(r, keys[i], frags[i])
			if err := p.ReadResponse(bufio.NewReader(bytes.NewReader(reply)), frags[i]); err != nil {
				return
			}
		}
		if got, want := mergeBothWays(p, r, frags); got != want {
			t.Fatalf("%q split %v: fragment replies %q: merged from recorded blocks %q, by parsing %q", line, r.KeyFrag, replies(frags), got, want)
		}
	})
}
