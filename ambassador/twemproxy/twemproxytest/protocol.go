// Package twemproxytest holds the conformance suite for twemproxy.Protocol implementations (the
// memcache and redis packages run it; so can a third-party protocol).
//
// # Lifecycle
//
// TestProtocol runs subtests and returns when they are done; it starts nothing that outlives it.
//
// # Cleanup
//
// Connections it opens (Cases.Server) are closed before it returns.
//
// # Concurrency
//
// TestProtocol must be called from the test's goroutine.
package twemproxytest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
)

// Exchange is one request as a client sends it and the reply a server gives to it.
type Exchange struct {
	Request  string
	Keys     []string // the keys the request must be routed by
	Response string
}

// Cases are the protocol-specific samples the suite drives a Protocol with.
type Cases struct {
	// Single-key requests (forwarded unchanged) with their replies.
	Single []Exchange
	// A request with several keys that the proxy may split (MultiKey), and one reply per key that
	// a server would give to a fragment carrying only that key.
	Multi          Exchange
	MultiKeyReplys []string
	// Unsupported is a well-formed request the proxy answers itself with an error.
	Unsupported string
	// Garbage is input that must fail ReadRequest with a *twemproxy.ClientError carrying a reply.
	Garbage string
	// ProbeOK is a good reply to Probe().
	ProbeOK string
	// Server, if set, is a real server's address: Probe is sent to it and must pass CheckProbe.
	Server string
}

func readAll(t *testing.T, p twemproxy.Protocol, in string) []*twemproxy.Request {
	t.Helper()
	br := bufio.NewReader(strings.NewReader(in))
	var out []*twemproxy.Request
	for {
		r := &twemproxy.Request{}
		err := p.ReadRequest(br, r)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("ReadRequest(%q): %v", in, err)
		}
		out = append(out, r)
	}
}

func keys(r *twemproxy.Request) []string {
	var ks []string
	for i := range r.Keys {
		ks = append(ks, string(r.Key(i)))
	}
	return ks
}

// TestProtocol checks the contract every twemproxy.Protocol keeps.
func TestProtocol(t *testing.T, p twemproxy.Protocol, c Cases) {
	t.Run("EOF", func(t *testing.T) {
		var r twemproxy.Request
		if err := p.ReadRequest(bufio.NewReader(strings.NewReader("")), &r); !errors.Is(err, io.EOF) {
			t.Errorf("ReadRequest on no input = %v, want io.EOF", err)
		}
	})
	t.Run("Single", func(t *testing.T) {
		for _, ex := range c.Single {
			rs := readAll(t, p, ex.Request)
			if len(rs) != 1 {
				t.Fatalf("%q parsed as %d requests", ex.Request, len(rs))
			}
			r := rs[0]
			if r.Local || string(r.Buf) != ex.Request || strings.Join(keys(r), " ") != strings.Join(ex.Keys, " ") {
				t.Errorf("%q: local=%v buf=%q keys=%q, want forwarded unchanged with keys %q", ex.Request, r.Local, r.Buf, keys(r), ex.Keys)
			}
			br := bufio.NewReader(strings.NewReader(ex.Response + "TRAILING"))
			if err := p.ReadResponse(br, r); err != nil || string(r.Resp) != ex.Response {
				t.Errorf("ReadResponse(%q) = %q, %v; want exactly the reply", ex.Response, r.Resp, err)
			}
			if rest, _ := io.ReadAll(br); string(rest) != "TRAILING" {
				t.Errorf("ReadResponse(%q) consumed past the reply: left %q", ex.Response, rest)
			}
			if err := p.ReadResponse(bufio.NewReader(strings.NewReader(ex.Response[:len(ex.Response)-1])), rs[0]); err == nil {
				t.Errorf("ReadResponse of a truncated %q succeeded", ex.Response)
			}
		}
	})
	t.Run("UnsupportedKeepsConnection", func(t *testing.T) {
		rs := readAll(t, p, c.Unsupported+c.Single[0].Request)
		if len(rs) != 2 || !rs[0].Local || len(rs[0].Resp) == 0 || rs[1].Local {
			t.Fatalf("unsupported then supported: got %d requests, first local=%v", len(rs), len(rs) > 0 && rs[0].Local)
		}
	})
	t.Run("Garbage", func(t *testing.T) {
		var r twemproxy.Request
		err := p.ReadRequest(bufio.NewReader(strings.NewReader(c.Garbage)), &r)
		var ce *twemproxy.ClientError
		if !errors.As(err, &ce) || len(ce.Reply) == 0 {
			t.Errorf("ReadRequest(%q) = %v, want a *ClientError with a reply", c.Garbage, err)
		}
	})
	t.Run("SplitMerge", func(t *testing.T) {
		rs := readAll(t, p, c.Multi.Request)
		if len(rs) != 1 || !rs[0].MultiKey || strings.Join(keys(rs[0]), " ") != strings.Join(c.Multi.Keys, " ") {
			t.Fatalf("%q: want one multi-key request with keys %q", c.Multi.Request, c.Multi.Keys)
		}
		r := rs[0]
		var frags []*twemproxy.Request
		for i := range r.Keys {
			f := &twemproxy.Request{}
			p.Fragment(r, []int{i}, f)
			again := readAll(t, p, string(f.Buf))
			if len(again) != 1 || strings.Join(keys(again[0]), " ") != c.Multi.Keys[i] {
				t.Fatalf("fragment %q does not parse back as a request for key %q", f.Buf, c.Multi.Keys[i])
			}
			if err := p.ReadResponse(bufio.NewReader(strings.NewReader(c.MultiKeyReplys[i])), f); err != nil {
				t.Fatalf("fragment reply %q: %v", c.MultiKeyReplys[i], err)
			}
			frags = append(frags, f)
			r.KeyFrag = append(r.KeyFrag, i)
		}
		p.Merge(r, frags)
		if string(r.Resp) != c.Multi.Response {
			t.Errorf("merged reply %q, want %q (the reply of the whole request)", r.Resp, c.Multi.Response)
		}
	})
	t.Run("ErrorReply", func(t *testing.T) {
		b := p.ErrorReply([]byte("x"), errors.New("boom\r\nsecond line"))
		if !bytes.HasPrefix(b, []byte("x")) || !bytes.HasSuffix(b, []byte("\r\n")) || bytes.Count(b, []byte("\n")) != 1 || !bytes.Contains(b, []byte("boom")) {
			t.Errorf("ErrorReply = %q, want one line appended, with the error's text", b)
		}
	})
	t.Run("Probe", func(t *testing.T) {
		if len(p.Probe()) == 0 {
			t.Fatal("empty Probe")
		}
		if err := p.CheckProbe(bufio.NewReader(strings.NewReader(c.ProbeOK))); err != nil {
			t.Errorf("CheckProbe(%q) = %v", c.ProbeOK, err)
		}
		if err := p.CheckProbe(bufio.NewReader(strings.NewReader("NOPE\r\n"))); err == nil {
			t.Error("CheckProbe accepted NOPE")
		}
		if c.Server == "" {
			return
		}
		conn, err := net.DialTimeout("tcp", c.Server, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(p.Probe()); err != nil {
			t.Fatal(err)
		}
		if err := p.CheckProbe(bufio.NewReader(conn)); err != nil {
			t.Errorf("probe against the real server %s: %v", c.Server, err)
		}
	})
}
