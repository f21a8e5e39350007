package twemproxy_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/lifecycletest"
)

// Pool and server names go into the stats JSON as nutcracker writes them, byte for byte ("<", "&",
// non-ASCII letters and U+00A0 raw), but for the quote, the backslash and the control characters,
// which JSON must escape: the document stays valid JSON and decodes to the configured names. The
// old code quoted them as Go does (\x01, \U000e0001, \u00a0), which is not JSON or not what
// nutcracker writes.
func TestStatsJSONNames(t *testing.T) {
	const (
		poolName   = "p<&>\x01\t\u00a0é\U000e0001\"q\\"
		serverName = "s<1>&\"x\x7f"
		otherName  = "t\x02"
	)
	yml := `"p<&>\x01\t\u00a0é\U000e0001\"q\\":
  listen: ` + freeport.TCP(t) + `
  servers:
   - "127.0.0.1:1:1 s<1>&\"x\x7f"
   - "127.0.0.1:2:1 t\x02"
`
	cfg := parseConfig(t, yml)
	if got := cfg.Pools[0].Name; got != poolName {
		t.Fatalf("pool name %q, want %q", got, poolName)
	}
	srv, err := twemproxy.NewServer(cfg, bothProtocols)
	if err != nil {
		t.Fatal(err)
	}
	run := lifecycletest.StartReady(t, srv, 10*time.Second)
	doc := srv.StatsJSON()
	for _, want := range []string{
		"\"p<&>\\u0001\\t\u00a0é\U000e0001\\\"q\\\\\": {",
		"\"s<1>&\\\"x\x7f\": {",
		"\"t\\u0002\": {",
	} {
		if !bytes.Contains(doc, []byte(want)) {
			t.Errorf("stats JSON lacks %q:\n%q", want, doc)
		}
	}
	var parsed map[string]any
	if err := json.Unmarshal(doc, &parsed); err != nil {
		t.Fatalf("stats JSON is not valid JSON: %v\n%q", err, doc)
	}
	pool, _ := parsed[poolName].(map[string]any)
	for _, name := range []string{serverName, otherName} {
		if _, ok := pool[name].(map[string]any); !ok {
			t.Errorf("stats JSON: pool %q has no server %q: %v", poolName, name, parsed)
		}
	}
	if err := run.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// A name or source with bytes that are not UTF-8 (only the Go API can make one: a Config built by
// hand, WithSource) is written with U+FFFD for each such byte, as encoding/json does, so the
// document stays UTF-8 and valid JSON; valid UTF-8 around it stays raw, but for U+2028, written
// \u2028 as encoding/json writes it. The old code copied the bytes, and the document was not UTF-8.
func TestStatsJSONInvalidUTF8(t *testing.T) {
	cfg := parseConfig(t, "p:\n  listen: "+freeport.TCP(t)+"\n  servers:\n   - 127.0.0.1:1:1 s\n")
	cfg.Pools[0].Name = "p\xffé\xe2\x82"
	cfg.Pools[0].Servers[0].Name = "s\xc0\x80"
	srv, err := twemproxy.NewServer(cfg, bothProtocols, twemproxy.WithSource("h\xfe\u2028"))
	if err != nil {
		t.Fatal(err)
	}
	run := lifecycletest.StartReady(t, srv, 10*time.Second)
	doc := srv.StatsJSON()
	if !utf8.Valid(doc) || !json.Valid(doc) {
		t.Errorf("stats JSON is not UTF-8 or not JSON:\n%q", doc)
	}
	for _, want := range []string{
		`"source":"h\ufffd\u2028"`,
		`"p\ufffdé\ufffd\ufffd": {`,
		`"s\ufffd\ufffd": {`,
	} {
		if !bytes.Contains(doc, []byte(want)) {
			t.Errorf("stats JSON lacks %q:\n%q", want, doc)
		}
	}
	if err := run.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// StatsFields lists the document's pool and server fields, in its order: what -D prints is what
// the stats port serves.
func TestStatsFieldsMatchDocument(t *testing.T) {
	cfg := parseConfig(t, "alpha:\n  listen: "+freeport.TCP(t)+"\n  servers:\n   - 127.0.0.1:1:1 one\n")
	srv, err := twemproxy.NewServer(cfg, bothProtocols)
	if err != nil {
		t.Fatal(err)
	}
	lifecycletest.StartReady(t, srv, 10*time.Second)
	var pool, server []string
	dec := json.NewDecoder(bytes.NewReader(srv.StatsJSON()))
	if _, err := dec.Token(); err != nil { // the document's '{'
		t.Fatal(err)
	}
	walkKeys(t, dec, 0, func(depth int, key string, object bool) {
		switch {
		case depth == 2 && !object:
			pool = append(pool, key)
		case depth == 3:
			server = append(server, key)
		}
	})
	var wantPool, wantServer []string
	for _, f := range twemproxy.StatsFields() {
		if f.Server {
			wantServer = append(wantServer, f.Name)
		} else {
			wantPool = append(wantPool, f.Name)
		}
		if f.Help == "" {
			t.Errorf("field %s has no help", f.Name)
		}
	}
	if diff := cmp.Diff(wantPool, pool); diff != "" {
		t.Errorf("pool fields (-StatsFields +document):\n%s", diff)
	}
	if diff := cmp.Diff(wantServer, server); diff != "" {
		t.Errorf("server fields (-StatsFields +document):\n%s", diff)
	}
}

// walkKeys reads the members of the JSON object whose '{' dec has read, at depth, to its '}',
// calling visit with each key in order (and whether its value is an object, which it walks).
func walkKeys(t *testing.T, dec *json.Decoder, depth int, visit func(depth int, key string, object bool)) {
	t.Helper()
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		key := tok.(string)
		val, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		object := val == json.Delim('{')
		visit(depth+1, key, object)
		if object {
			walkKeys(t, dec, depth+1, visit)
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		t.Fatal(err)
	}
}
