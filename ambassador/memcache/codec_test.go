package memcache_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
)

type parsed struct {
	Keys    []string
	NoReply bool
	Local   string
	Quit    bool
	Multi   bool
}

func parse(p *memcache.Protocol, in string) ([]parsed, error) {
	br := bufio.NewReaderSize(strings.NewReader(in), 16<<10)
	var out []parsed
	for {
		var r twemproxy.Request
		err := p.ReadRequest(br, &r)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		pr := parsed{NoReply: r.NoReply, Quit: r.Quit, Multi: r.MultiKey}
		if r.Local {
			pr.Local = string(r.Resp)
		}
		for i := range r.Keys {
			pr.Keys = append(pr.Keys, string(r.Key(i)))
		}
		out = append(out, pr)
	}
}

// memcached's error replies.
const (
	badFormat   = "CLIENT_ERROR bad command line format\r\n"
	badDelta    = "CLIENT_ERROR invalid numeric delta argument\r\n"
	badExptime  = "CLIENT_ERROR invalid exptime argument\r\n"
	deleteUsage = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
)

var requestTests = []struct {
	name, in string
	want     []parsed
	wantErr  bool
}{
	{"get", "get a\r\n", []parsed{{Keys: []string{"a"}}}, false},
	{"multi get", "gets a  b c\r\n", []parsed{{Keys: []string{"a", "b", "c"}, Multi: true}}, false},
	{"gat", "gat 100 a b\r\n", []parsed{{Keys: []string{"a", "b"}, Multi: true}}, false},
	{"set", "set k 1 2 3\r\nabc\r\n", []parsed{{Keys: []string{"k"}}}, false},
	{"set noreply", "set k 1 2 3 noreply\r\nabc\r\n", []parsed{{Keys: []string{"k"}, NoReply: true}}, false},
	{"cas", "cas k 0 0 1 99\r\nx\r\n", []parsed{{Keys: []string{"k"}}}, false},
	{"delete", "delete k\r\ndelete k noreply\r\ndelete k 0\r\n", []parsed{{Keys: []string{"k"}}, {Keys: []string{"k"}, NoReply: true}, {Keys: []string{"k"}}}, false},
	{"incr touch", "incr k 1\r\ntouch k 10 noreply\r\n", []parsed{{Keys: []string{"k"}}, {Keys: []string{"k"}, NoReply: true}}, false},
	{"unknown", "flush_all\r\nget a\r\n", []parsed{{Local: "ERROR\r\n"}, {Keys: []string{"a"}}}, false},
	{"get without key", "get\r\n", []parsed{{Local: "ERROR\r\n"}}, false},
	{"bad set", "set k x 0 1\r\nx\r\nget a\r\n", []parsed{{Local: "CLIENT_ERROR bad command line format\r\n"}, {Keys: []string{"a"}}}, false},
	{"too large", "set k 0 0 20\r\n01234567890123456789\r\nget a\r\n", []parsed{{Local: "SERVER_ERROR object too large for cache\r\n"}, {Keys: []string{"a"}}}, false},
	{"too large noreply", "set k 0 0 20 noreply\r\n01234567890123456789\r\nget a\r\n",
		[]parsed{{Local: "SERVER_ERROR object too large for cache\r\n", NoReply: true}, {Keys: []string{"a"}}}, false},
	{"malformed noreply", "set k 0 0 -1 noreply\r\ncas k 0 0 1 noreply\r\nx\r\ndelete k 5 noreply\r\nincr k noreply\r\n", []parsed{
		{Local: "CLIENT_ERROR bad command line format\r\n", NoReply: true}, {Local: "CLIENT_ERROR bad command line format\r\n", NoReply: true},
		{Local: deleteUsage, NoReply: true}, {Local: badDelta, NoReply: true}}, false},
	{"noreply out of place", "delete noreply\r\ndelete k a b noreply\r\ndelete k 0 noreply\r\n", []parsed{
		{Keys: []string{"noreply"}}, {Local: "ERROR\r\n"}, {Keys: []string{"k"}, NoReply: true}}, false},

	// Every number is read as memcached 1.6 reads it; one it refuses, or a 64-bit memcached cuts
	// to 32 bits and a 32-bit one refuses, is answered here, the data block consumed when its
	// length can be read, and never forwarded: memcached would run the data block as a command and
	// send its reply on a connection other clients share.
	{"flags past 2^64-1", "set x 18446744073709551616 0 10 noreply\r\nget secret\r\nget a\r\n",
		[]parsed{{Local: badFormat, NoReply: true}, {Keys: []string{"a"}}}, false},
	{"negative flags", "set k -1 0 1\r\nx\r\nget a\r\n", []parsed{{Local: badFormat}, {Keys: []string{"a"}}}, false},
	{"flags past 32 bits", "set k 4294967296 0 1\r\nx\r\nset k -0 0 1\r\nx\r\nset k 4294967295 0 1\r\nx\r\n",
		[]parsed{{Local: badFormat}, {Keys: []string{"k"}}, {Keys: []string{"k"}}}, false},
	{"exptime past int64", "set x 0 99999999999999999999 10 noreply\r\nget secret\r\nget a\r\n",
		[]parsed{{Local: badFormat, NoReply: true}, {Keys: []string{"a"}}}, false},
	{"exptime 2^63", "set k 0 9223372036854775808 1\r\nx\r\nget a\r\n", []parsed{{Local: badFormat}, {Keys: []string{"a"}}}, false},
	{"exptime int32 bounds", "set k 0 -2147483649 1\r\nx\r\nset k 0 2147483648 1 noreply\r\nx\r\nset k 0 -2147483648 1\r\nx\r\nset k 0 2147483647 1\r\nx\r\n",
		[]parsed{{Local: badFormat}, {Local: badFormat, NoReply: true}, {Keys: []string{"k"}}, {Keys: []string{"k"}}}, false},
	{"cas unique past 2^64-1", "cas k 0 0 1 18446744073709551616\r\nx\r\nget a\r\n", []parsed{{Local: badFormat}, {Keys: []string{"a"}}}, false},
	{"negative cas unique", "cas k 0 0 1 -1\r\nx\r\nget a\r\n", []parsed{{Local: badFormat}, {Keys: []string{"a"}}}, false},
	{"cas unique 2^64-1", "cas k 0 0 1 18446744073709551615\r\nx\r\n", []parsed{{Keys: []string{"k"}}}, false},
	// A 64-bit memcached reads a block of a length's low 32 bits, a 32-bit one none: the proxy
	// cannot tell where the next command starts, and closes the connection.
	{"length past 32 bits", "set k 0 0 4294967297\r\nx\r\n", nil, true},
	{"negative length past 32 bits", "set k 0 0 -4294967295 noreply\r\nx\r\n", nil, true},
	{"length past 64 bits", "set k 0 0 18446744073709551616\r\nget a\r\n", []parsed{{Local: badFormat}, {Keys: []string{"a"}}}, false},
	{"exptime only a 64-bit memcached reads", "set k 0 4294967297 4294967297\r\nx\r\n", nil, true},
	// memcached reads no length here: both builds answer and run the block as a command.
	{"length past 32 bits, too many tokens", "set k 0 0 4294967297 noreply extra\r\nx\r\nget k\r\n",
		[]parsed{{Local: "ERROR\r\n"}, {Local: "ERROR\r\n"}, {Keys: []string{"k"}}}, false},
	{"length past 32 bits, bad flags", "set k abc 0 4294967297\r\nx\r\nget k\r\n",
		[]parsed{{Local: badFormat}, {Local: "ERROR\r\n"}, {Keys: []string{"k"}}}, false},
	{"length past 32 bits, long key", "set " + strings.Repeat("k", 251) + " 0 0 4294967297\r\nx\r\n",
		[]parsed{{Local: badFormat}, {Local: "ERROR\r\n"}}, false},
	{"length past 32 bits, cas without unique", "cas k 0 0 4294967297\r\nx\r\n", []parsed{{Local: "ERROR\r\n"}, {Local: "ERROR\r\n"}}, false},
	{"length past int32", "set k 0 0 2147483648\r\nget a\r\n", []parsed{{Local: badFormat}, {Keys: []string{"a"}}}, false},
	{"numbers with C white space", "set k \t1 +0 1\tjunk\r\nx\r\nset k 0 0 1\r\r\nx\r\n", []parsed{{Keys: []string{"k"}}, {Keys: []string{"k"}}}, false},
	{"bad key consumes data", "set a\x01b 0 0 1\r\nx\r\nget a\r\n", []parsed{{Local: badFormat}, {Keys: []string{"a"}}}, false},
	{"incr delta", "incr k 18446744073709551616\r\nincr k -1\r\ndecr k 18446744073709551615\r\n",
		[]parsed{{Local: badDelta}, {Local: badDelta}, {Keys: []string{"k"}}}, false},
	{"touch exptime", "touch k 99999999999999999999\r\ntouch k 4294967296 noreply\r\ntouch k 2147483647\r\n",
		[]parsed{{Local: badExptime}, {Local: badExptime, NoReply: true}, {Keys: []string{"k"}}}, false},
	{"gat exptime", "gat 99999999999999999999 a\r\ngats x a\r\ngat 1\r\ngat -2147483649 a\r\n",
		[]parsed{{Local: badExptime}, {Local: badExptime}, {Local: "END\r\n"}, {Local: badExptime}}, false},
	{"delete hold time", "delete k 1\r\n", []parsed{{Local: deleteUsage}}, false},
	// memcached reads a command line only up to a NUL byte: it would take this set as noreply.
	{"NUL byte", "set k 0 0 1 noreply\x00x\r\nx\r\n", nil, true},
	// memcached closes a connection whose unfinished line (not a get) passes 2048 bytes.
	{"command line over 2048 bytes", "delete" + strings.Repeat(" ", 2048) + "k\r\n", nil, true},

	// A last token memcached does not know is ignored; too many tokens are answered ERROR, the
	// data block consumed: one reply either way.
	{"unknown last token", "set k 0 0 1 NOREPLY\r\nx\r\ncas k 0 0 1 2 noreplx\r\nx\r\nincr k 1 x\r\ntouch k 1 x\r\n",
		[]parsed{{Keys: []string{"k"}}, {Keys: []string{"k"}}, {Keys: []string{"k"}}, {Keys: []string{"k"}}}, false},
	{"too many tokens", "set k 0 0 1 noreply x\r\nx\r\ncas k 0 0 1\r\nx\r\nget a\r\n",
		[]parsed{{Local: "ERROR\r\n"}, {Local: "ERROR\r\n"}, {Keys: []string{"a"}}}, false},
	{"long key", "get " + strings.Repeat("k", 251) + "\r\n", []parsed{{Local: "CLIENT_ERROR bad command line format\r\n"}}, false},
	// version is forwarded, with no key; with anything after it but spaces, which memcached
	// answers, it closes the connection, as nutcracker closes it.
	{"version quit", "version\r\nversion  \r\nquit\r\n", []parsed{{}, {}, {Quit: true}}, false},
	{"version with arguments", "version\r\nversion x noreply\r\nquit\r\n", []parsed{{}}, true},
	{"version noreply", "version noreply\r\n", nil, true},
	{"version over 2048 bytes", "version" + strings.Repeat(" ", 2048) + "\r\n", nil, true},
	{"too large, 64 times the limit", "set k 0 0 640\r\n" + strings.Repeat("x", 640) + "\r\nget a\r\n",
		[]parsed{{Local: "SERVER_ERROR object too large for cache\r\n"}, {Keys: []string{"a"}}}, false},
	{"too large, over 64 times the limit", "set k 0 0 641\r\n" + strings.Repeat("x", 641) + "\r\nget a\r\n", nil, true},
	{"bad chunk", "set k 0 0 1\r\nxyz\r\n", nil, true},
	{"truncated", "set k 0 0 10\r\nabc", nil, true},
	{"line too long", strings.Repeat("g", 20000) + "\r\n", nil, true},
	{"leading spaces", "  get a\r\n   set k 0 0 1\r\nx\r\n delete k\r\n", []parsed{{Keys: []string{"a"}}, {Keys: []string{"k"}}, {Keys: []string{"k"}}}, false},
	{"get line past the read buffer", "get " + strings.Repeat("k ", 15000) + "a\r\nget b\r\n",
		[]parsed{{Keys: append(slices.Repeat([]string{"k"}, 15000), "a"), Multi: true}, {Keys: []string{"b"}}}, false},
	{"gets line past the read buffer, 100 spaces first", strings.Repeat(" ", 100) + "gets " + strings.Repeat("k ", 15000) + "a\r\n",
		[]parsed{{Keys: append(slices.Repeat([]string{"k"}, 15000), "a"), Multi: true}}, false},
	{"get line past the read buffer, 101 spaces first", strings.Repeat(" ", 101) + "get " + strings.Repeat("k ", 15000) + "a\r\n", nil, true},
	{"gat line past the read buffer", "gat 0 " + strings.Repeat("k ", 15000) + "a\r\n", nil, true},
	{"get line past 1 MiB", "get " + strings.Repeat("k ", 1<<19) + "\r\n", nil, true},
}

func TestReadRequest(t *testing.T) {
	p := &memcache.Protocol{MaxValueSize: 10}
	for _, tc := range requestTests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parse(p, tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadResponse(t *testing.T) {
	p := &memcache.Protocol{}
	tests := []struct {
		name, req, resp, want string
	}{
		{"get hit", "get a\r\n", "VALUE a 0 3\r\nabc\r\nEND\r\nEXTRA", "VALUE a 0 3\r\nabc\r\nEND\r\n"},
		{"get miss", "get a\r\n", "END\r\n", "END\r\n"},
		{"value with CRLF inside", "get a b\r\n", "VALUE a 0 4\r\na\r\nb\r\nVALUE b 0 0 77\r\n\r\nEND\r\n", "VALUE a 0 4\r\na\r\nb\r\nVALUE b 0 0 77\r\n\r\nEND\r\n"},
		{"get error", "get a\r\n", "SERVER_ERROR out of memory\r\n", "SERVER_ERROR out of memory\r\n"},
		{"stored", "set a 0 0 1\r\nx\r\n", "STORED\r\n", "STORED\r\n"},
		{"version", "version\r\n", "VERSION 1.6.18\r\nEXTRA", "VERSION 1.6.18\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r twemproxy.Request
			if err := p.ReadRequest(bufio.NewReader(strings.NewReader(tc.req)), &r); err != nil {
				t.Fatal(err)
			}
			if err := p.ReadResponse(bufio.NewReader(strings.NewReader(tc.resp)), &r); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, string(r.Resp)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestFragmentMerge(t *testing.T) {
	p := &memcache.Protocol{}
	var r twemproxy.Request
	if err := p.ReadRequest(bufio.NewReader(strings.NewReader("gets a b c\r\n")), &r); err != nil {
		t.Fatal(err)
	}
	f1, f2 := &twemproxy.Request{}, &twemproxy.Request{}
	p.Fragment(&r, []int{0, 2}, f1)
	p.Fragment(&r, []int{1}, f2)
	if diff := cmp.Diff([]string{"gets a c\r\n", "gets b\r\n"}, []string{string(f1.Buf), string(f2.Buf)}); diff != "" {
		t.Errorf("fragments (-want +got):\n%s", diff)
	}
	f1.Resp = []byte("VALUE a 0 1 5\r\n1\r\nEND\r\n")
	f2.Resp = []byte("VALUE b 0 1 6\r\n2\r\nEND\r\n")
	p.Merge(&r, []*twemproxy.Request{f1, f2})
	if diff := cmp.Diff("VALUE a 0 1 5\r\n1\r\nVALUE b 0 1 6\r\n2\r\nEND\r\n", string(r.Resp)); diff != "" {
		t.Errorf("merge (-want +got):\n%s", diff)
	}
}

// Spaces before a command are dropped from what is forwarded, also from a split get's fragments:
// memcached closes a connection on a get line past 2048 bytes with more than 100 spaces first when
// the line reaches it in pieces.
func TestLeadingSpacesNotForwarded(t *testing.T) {
	p := &memcache.Protocol{}
	spaces := strings.Repeat(" ", 200)
	for _, in := range []string{spaces + "get a b\r\n", spaces + "set a 0 0 1\r\nx\r\n", " gets a b\r\n"} {
		var r twemproxy.Request
		if err := p.ReadRequest(bufio.NewReader(strings.NewReader(in)), &r); err != nil || r.Local {
			t.Fatalf("ReadRequest(%q): %v, local reply %q", in, err, r.Resp)
		}
		if want := strings.TrimLeft(in, " "); string(r.Buf) != want {
			t.Errorf("ReadRequest(%q) forwards %q, want %q", in, r.Buf, want)
		}
		if r.MultiKey {
			var frag twemproxy.Request
			p.Fragment(&r, []int{1}, &frag)
			if got := string(frag.Buf); strings.HasPrefix(got, " ") || !strings.HasSuffix(got, " b\r\n") {
				t.Errorf("fragment of %q for b: %q", in, got)
			}
		}
	}
}

// A retrieval's reply past MaxReplySize, read from one server or merged from several, becomes
// memcached's out-of-memory error; the rest of the server's reply is read, so the next one is read
// in step.
func TestReplyOverMaxReplySize(t *testing.T) {
	const block = "VALUE a 0 10\r\n0123456789\r\n" // 26 bytes; with END, two make 57
	const large = "SERVER_ERROR out of memory writing get response\r\n"
	for _, tc := range []struct {
		max  int
		want string
	}{
		{57, block + block + "END\r\n"},
		{56, large},
	} {
		p := &memcache.Protocol{MaxValueSize: 10, MaxReplySize: tc.max}
		var r twemproxy.Request
		if err := p.ReadRequest(bufio.NewReader(strings.NewReader("get a a\r\n")), &r); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(strings.NewReader(block + block + "END\r\nSTORED\r\n"))
		if err := p.ReadResponse(br, &r); err != nil {
			t.Fatal(err)
		}
		if string(r.Resp) != tc.want {
			t.Errorf("MaxReplySize %d: reply %q, want %q", tc.max, r.Resp, tc.want)
		}
		if rest, _ := io.ReadAll(br); string(rest) != "STORED\r\n" {
			t.Errorf("MaxReplySize %d: left unread %q, want the next reply", tc.max, rest)
		}

		f1 := &twemproxy.Request{Resp: []byte(block + "END\r\n")}
		f2 := &twemproxy.Request{Resp: []byte(block + "END\r\n")}
		var merged twemproxy.Request
		p.Merge(&merged, []*twemproxy.Request{f1, f2})
		if string(merged.Resp) != tc.want {
			t.Errorf("MaxReplySize %d: merged %q, want %q", tc.max, merged.Resp, tc.want)
		}
	}
}

func FuzzReadRequest(f *testing.F) {
	for _, tc := range requestTests {
		f.Add([]byte(tc.in))
	}
	f.Add([]byte(strings.Repeat(" ", 200) + "get " + strings.Repeat("k ", 1500) + "\r\n"))
	p := &memcache.Protocol{MaxValueSize: 64}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 16<<10)
		for range 100 {
			var r twemproxy.Request
			if err := p.ReadRequest(br, &r); err != nil {
				return
			}
			if r.Local {
				continue
			}
			// Only "version", with nothing after it but spaces, goes without a key.
			line := bytes.TrimSuffix(bytes.TrimSuffix(r.Buf, []byte("\n")), []byte("\r"))
			version := string(bytes.TrimRight(line, " ")) == "version"
			if len(r.Keys) == 0 && !version || !bytes.HasSuffix(r.Buf, []byte("\n")) { // memcached also accepts a bare \n
				t.Fatalf("forwardable request %q without keys or line end", r.Buf)
			}
			// memcached closes a connection on an unfinished line past 2048 bytes unless it starts
			// with get or gets, with no more than 100 spaces first.
			if r.Buf[0] == ' ' {
				t.Fatalf("forwardable request %.40q... starts with a space", r.Buf)
			}
			if line := r.Buf[:bytes.IndexByte(r.Buf, '\n')+1]; len(line) > 2048 && !bytes.HasPrefix(line, []byte("get ")) && !bytes.HasPrefix(line, []byte("gets ")) {
				t.Fatalf("forwardable line of %d bytes %.40q... is not a get or gets", len(line), line)
			}
			for i := range r.Keys {
				if k := r.Key(i); len(k) == 0 || len(k) > memcache.MaxKeyLength || bytes.ContainsAny(k, " \r\n") {
					t.Fatalf("bad key %q in %q", k, r.Buf)
				}
			}
		}
	})
}

func FuzzReadResponse(f *testing.F) {
	f.Add([]byte("VALUE a 0 3\r\nabc\r\nEND\r\n"), true)
	f.Add([]byte("STORED\r\n"), false)
	f.Add([]byte("VALUE a 0 -1\r\n"), true)
	p := &memcache.Protocol{MaxValueSize: 64}
	f.Fuzz(func(t *testing.T, data []byte, get bool) {
		req := "set k 0 0 1\r\nx\r\n"
		if get {
			req = "get k\r\n"
		}
		var r twemproxy.Request
		if err := p.ReadRequest(bufio.NewReader(strings.NewReader(req)), &r); err != nil {
			t.Fatal(err)
		}
		if err := p.ReadResponse(bufio.NewReader(bytes.NewReader(data)), &r); err == nil && !bytes.HasPrefix(data, r.Resp) {
			t.Fatalf("response %q is not a prefix of the input", r.Resp)
		}
	})
}

// split parses line and splits it as the pool does: key i goes to fragment frag[i] (numbered from
// 0 in order of first use); each fragment's reply is what memcached sends for its keys, a block
// for each key in hits (whose value is value(key)), read back with ReadResponse.
func split(tb testing.TB, p *memcache.Protocol, line string, frag []int, hits map[string]bool, value func(k string) string) (*twemproxy.Request, []*twemproxy.Request) {
	tb.Helper()
	r := &twemproxy.Request{}
	if err := p.ReadRequest(bufio.NewReader(strings.NewReader(line)), r); err != nil || r.Local {
		tb.Fatalf("ReadRequest(%q): %v, local reply %q", line, err, r.Resp)
	}
	var frags []*twemproxy.Request
	var keys [][]int
	for i := range r.Keys {
		f := frag[i%len(frag)]
		for f >= len(frags) {
			frags, keys = append(frags, &twemproxy.Request{}), append(keys, nil)
		}
		r.KeyFrag = append(r.KeyFrag, f)
		keys[f] = append(keys[f], i)
	}
	for f, fr := range frags {
		p.Fragment(r, keys[f], fr)
		resp := memcachedReply(r, keys[f], hits, value)
		if err := p.ReadResponse(bufio.NewReader(strings.NewReader(resp)), fr); err != nil {
			tb.Fatalf("fragment %q: reply %q: %v", fr.Buf, resp, err)
		}
	}
	return r, frags
}

// memcachedReply is memcached's reply to the retrieval r of its keys with the given indexes (all
// of them if nil): a block per hit, in order.
func memcachedReply(r *twemproxy.Request, keys []int, hits map[string]bool, value func(k string) string) string {
	if keys == nil {
		keys = make([]int, len(r.Keys))
		for i := range keys {
			keys[i] = i
		}
	}
	gets := bytes.HasPrefix(r.Buf, []byte("gets ")) || bytes.HasPrefix(r.Buf, []byte("gats "))
	var b strings.Builder
	for _, i := range keys {
		if k := string(r.Key(i)); hits[k] {
			v := value(k)
			fmt.Fprintf(&b, "VALUE %s %d %d", k, len(k), len(v))
			if gets {
				fmt.Fprintf(&b, " %d", 100+len(v))
			}
			fmt.Fprintf(&b, "\r\n%s\r\n", v)
		}
	}
	return b.String() + "END\r\n"
}

func valueOf(k string) string { return "v-" + k }

// Merge lists the blocks in the order of the request's keys, as memcached answers the whole
// request, whichever fragment each came from.
func TestMergeKeyOrder(t *testing.T) {
	hits := map[string]bool{"k1": true, "k2": true, "k3": true, "k7": true, "a": true, "VALUE": true, "END": true}
	for _, tc := range []struct {
		line string
		frag []int
	}{
		{"get k1 k2 k7 k3\r\n", []int{0, 1, 0, 2}},
		{"get k1 k0 k1\r\n", []int{0, 1, 0}},
		{"gets k1 k0 k1\r\n", []int{0, 1, 0}},
		{"gets k9 k1 k7 k2 k8 k3 k7 k1\r\n", []int{0, 1, 1, 0, 2, 2, 1, 1}},
		{"gat 10 k7 k1 k2\r\n", []int{0, 0, 1}},
		{"gats 10 k0 k1 k9 k2\r\n", []int{0, 1, 0, 1}},
		{"get k4 k5 k6\r\n", []int{0, 1, 2}},        // every key a miss
		{"get VALUE END a\r\n", []int{0, 1, 0}},     // keys that look like the reply's words
		{"get a a a a a\r\n", []int{0, 1, 0, 1, 1}}, // one key, asked on two servers
	} {
		p := &memcache.Protocol{}
		r, frags := split(t, p, tc.line, tc.frag, hits, valueOf)
		p.Merge(r, frags)
		if diff := cmp.Diff(memcachedReply(r, nil, hits, valueOf), string(r.Resp)); diff != "" {
			t.Errorf("%q split %v (-want +got):\n%s", tc.line, tc.frag, diff)
		}
		if len(r.Scratch) != 1 {
			t.Errorf("%q: Scratch holds %d spans after Merge, want 1: the command's prefix", tc.line, len(r.Scratch))
		}
	}
}

// A fragment's reply that is not blocks under END is the reply (a server's error); blocks a server
// sent in another order than asked, or for keys not asked, are kept, after the others.
func TestMergeOddReplies(t *testing.T) {
	p := &memcache.Protocol{}
	var r twemproxy.Request
	if err := p.ReadRequest(bufio.NewReader(strings.NewReader("get a b c d\r\n")), &r); err != nil {
		t.Fatal(err)
	}
	r.KeyFrag = []int{0, 1, 0, 1}
	block := func(k string) string { return "VALUE " + k + " 0 1\r\n" + k + "\r\n" }
	for _, tc := range []struct {
		name, f0, f1, want string
	}{
		{"in order", block("a") + block("c") + "END\r\n", block("b") + "END\r\n", block("a") + block("b") + block("c") + "END\r\n"},
		{"server error", block("a") + "END\r\n", "SERVER_ERROR out of memory\r\n", "SERVER_ERROR out of memory\r\n"},
		{"server order", block("c") + block("a") + "END\r\n", block("d") + block("b") + "END\r\n",
			block("c") + block("d") + block("a") + block("b") + "END\r\n"},
		{"key not asked", block("x") + block("a") + "END\r\n", block("b") + "END\r\n", block("b") + block("x") + block("a") + "END\r\n"},
		// Not blocks, but ending with END: joined as they are (ReadResponse makes no such reply).
		{"not blocks", "VALUE a 0 9\r\na\r\nEND\r\n", "garbage END\r\n", "VALUE a 0 9\r\na\r\ngarbage END\r\n"},
	} {
		f0, f1 := &twemproxy.Request{Resp: []byte(tc.f0)}, &twemproxy.Request{Resp: []byte(tc.f1)}
		r.Resp = append(r.Resp[:0], "stale"...)
		p.Merge(&r, []*twemproxy.Request{f0, f1})
		if diff := cmp.Diff(tc.want, string(r.Resp)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

// FuzzMerge splits a retrieval of the keys in line over up to 8 servers (frag) with the hits in
// hits, and checks that Merge answers as memcached answers the whole request; then it merges
// arbitrary fragment replies (junk), which must not panic.
func FuzzMerge(f *testing.F) {
	f.Add("get k1 k2 k7 k3", []byte{0, 1, 0, 2}, uint64(0xff), []byte("VALUE k1 0 1\r\nx\r\nEND\r\n"))
	f.Add("gets k1 k0 k1", []byte{0, 1}, uint64(0b101), []byte("SERVER_ERROR x\r\n"))
	f.Add("gats 0 VALUE END a a", []byte{3, 1, 4}, uint64(0b1011), []byte("VALUE a 0 -1\r\nEND\r\n"))
	f.Fuzz(func(t *testing.T, line string, frag []byte, hitBits uint64, junk []byte) {
		p := &memcache.Protocol{}
		var r twemproxy.Request
		if err := p.ReadRequest(bufio.NewReader(strings.NewReader(line+"\r\n")), &r); err != nil || r.Local || len(r.Keys) < 2 || len(frag) == 0 {
			return
		}
		frag = frag[:min(len(frag), len(r.Keys))]
		ids := map[byte]int{} // the pool numbers fragments in order of first use
		numbered := make([]int, len(frag))
		for i, b := range frag {
			if _, ok := ids[b%8]; !ok {
				ids[b%8] = len(ids)
			}
			numbered[i] = ids[b%8]
		}
		hits := map[string]bool{}
		for i := range r.Keys {
			hits[string(r.Key(i))] = hitBits&(1<<(i%64)) != 0
		}
		value := func(k string) string { return strings.Repeat(k, 2) }
		req, frags := split(t, p, line+"\r\n", numbered, hits, value)
		p.Merge(req, frags)
		if want := memcachedReply(req, nil, hits, value); string(req.Resp) != want {
			t.Fatalf("%q split %v: merged %q, want %q", line, numbered, req.Resp, want)
		}
		frags[0].Resp = append(frags[0].Resp[:0], junk...)
		p.Merge(req, frags)
	})
}
