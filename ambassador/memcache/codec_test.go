package memcache_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
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
	{"bad set", "set k x 0 1\r\n", []parsed{{Local: "CLIENT_ERROR bad command line format\r\n"}}, false},
	{"too large", "set k 0 0 20\r\n01234567890123456789\r\nget a\r\n", []parsed{{Local: "SERVER_ERROR object too large for cache\r\n"}, {Keys: []string{"a"}}}, false},
	{"too large noreply", "set k 0 0 20 noreply\r\n01234567890123456789\r\nget a\r\n",
		[]parsed{{Local: "SERVER_ERROR object too large for cache\r\n", NoReply: true}, {Keys: []string{"a"}}}, false},
	{"malformed noreply", "set k 0 0 -1 noreply\r\ncas k 0 0 1 noreply\r\ndelete k 5 noreply\r\nincr k noreply\r\n", []parsed{
		{Local: "CLIENT_ERROR bad command line format\r\n", NoReply: true}, {Local: "CLIENT_ERROR bad command line format\r\n", NoReply: true},
		{Local: "CLIENT_ERROR bad command line format\r\n", NoReply: true}, {Local: "CLIENT_ERROR bad command line format\r\n", NoReply: true}}, false},
	{"noreply out of place", "delete noreply\r\ndelete k a b noreply\r\ndelete k 0 noreply\r\n", []parsed{
		{Keys: []string{"noreply"}}, {Local: "CLIENT_ERROR bad command line format\r\n"}, {Keys: []string{"k"}, NoReply: true}}, false},
	{"long key", "get " + strings.Repeat("k", 251) + "\r\n", []parsed{{Local: "CLIENT_ERROR bad command line format\r\n"}}, false},
	{"version quit", "version\r\nquit\r\n", []parsed{{Local: "VERSION podblocks\r\n"}, {Quit: true}}, false},
	{"bad chunk", "set k 0 0 1\r\nxyz\r\n", nil, true},
	{"truncated", "set k 0 0 10\r\nabc", nil, true},
	{"line too long", strings.Repeat("g", 20000) + "\r\n", nil, true},
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

func FuzzReadRequest(f *testing.F) {
	for _, tc := range requestTests {
		f.Add([]byte(tc.in))
	}
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
			if len(r.Keys) == 0 || !bytes.HasSuffix(r.Buf, []byte("\n")) { // memcached also accepts a bare \n
				t.Fatalf("forwardable request %q without keys or line end", r.Buf)
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
